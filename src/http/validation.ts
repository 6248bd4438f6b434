import { Ajv, type Options } from 'ajv';
import type { FastifySchemaCompiler } from 'fastify';

/**
 * Two validators: query strings, params and headers are text, so they are coerced
 * (`limit=100` → 100); bodies are JSON and are checked as sent, so `"21.5"` is not a
 * number and unknown properties are rejected rather than silently dropped.
 */
export function validatorCompiler(): FastifySchemaCompiler<unknown> {
  const common: Options = { useDefaults: true, allErrors: false, strict: false, allowUnionTypes: true };
  const text = new Ajv({ ...common, coerceTypes: 'array', removeAdditional: false });
  const body = new Ajv({ ...common, coerceTypes: false, removeAdditional: false });
  return ({ schema, httpPart }) => {
    const ajv = httpPart === 'body' ? body : text;
    return ajv.compile(schema as object) as ReturnType<FastifySchemaCompiler<unknown>>;
  };
}
