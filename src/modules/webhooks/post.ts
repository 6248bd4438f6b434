import http from 'node:http';
import https from 'node:https';
import { PrivateTargetError, privateHostReason, publicOnlyLookup } from './targets.ts';

export interface PostOptions {
  headers: Record<string, string>;
  signal: AbortSignal;
  /** WEBHOOK_ALLOW_PRIVATE: connect to any address. */
  allowPrivate: boolean;
}

/**
 * POSTs `body` to `url`; resolves with the answer's status (its body is not read), rejects
 * on a network error, an abort (`signal`) or a refused address. node:http rather than fetch:
 * its `lookup` option vets the address of the connection actually made. A redirect is not
 * followed (node:http never does): it would send the payload somewhere unvetted, and its
 * 3xx status is the result. Each delivery has a connection of its own (`agent: false`), so
 * no socket opened under another setting or for another lookup is ever reused.
 */
export function postWebhook(url: URL, body: string, opts: PostOptions): Promise<number> {
  if (!opts.allowPrivate) {
    // node does not call `lookup` for an IP-literal host
    const reason = privateHostReason(url.hostname);
    if (reason) return Promise.reject(new PrivateTargetError(reason));
  }
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).request(
      url,
      {
        method: 'POST',
        headers: { ...opts.headers, 'content-length': String(Buffer.byteLength(body)) },
        signal: opts.signal,
        agent: false,
        ...(opts.allowPrivate ? {} : { lookup: publicOnlyLookup }),
      },
      (res) => {
        resolve(res.statusCode ?? 0);
        res.destroy();
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
