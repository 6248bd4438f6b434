import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import type { TaskList } from 'graphile-worker';
import type { Logger } from 'pino';
import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
import type { Config } from '../config.ts';
import { enqueue } from '../jobs/enqueue.ts';
import type { Db } from './db.ts';
import type { Metrics } from './metrics.ts';

/** One address; no display names or lists, so nothing can smuggle in extra recipients. */
export const EMAIL_PATTERN = '^[^\\s@<>()\\[\\]",;:\\\\]{1,64}@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$';
export const EmailAddress = Type.String({ pattern: EMAIL_PATTERN, maxLength: 254, description: 'One e-mail address.' });

export const MailMessage = Type.Object(
  {
    to: EmailAddress,
    subject: Type.String({ minLength: 1, maxLength: 200 }),
    text: Type.String({ minLength: 1, maxLength: 100_000 }),
  },
  { additionalProperties: false },
);
export type MailMessage = Static<typeof MailMessage>;

export const MAIL_TASK = 'mail.send';
/** With the job system's exponential backoff, about nine hours of retries. */
const MAIL_MAX_ATTEMPTS = 10;

/**
 * Queues an e-mail in the caller's transaction: it is sent exactly when that transaction
 * commits, by a job that the job system retries, so a mail server's failure never fails
 * the request or the change that caused the mail.
 */
export async function enqueueMail(db: Db, message: MailMessage): Promise<string> {
  if (!Value.Check(MailMessage, message)) throw new Error(`invalid mail message: ${[...Value.Errors(MailMessage, message)][0]?.message}`);
  return enqueue(db, MAIL_TASK, message, { maxAttempts: MAIL_MAX_ATTEMPTS });
}

/** enqueueMail for many messages in one statement (one add_jobs call). */
export async function enqueueMails(db: Db, messages: MailMessage[]): Promise<number> {
  if (!messages.length) return 0;
  for (const m of messages) {
    if (!Value.Check(MailMessage, m)) throw new Error(`invalid mail message: ${[...Value.Errors(MailMessage, m)][0]?.message}`);
  }
  const rows = await db.query<{ n: number }>(
    'mail.enqueue_many',
    `select count(*)::int as n from graphile_worker.add_jobs(array(
       select row($1::text, u.m, null, null, $2::smallint, null, null, null)::graphile_worker.job_spec
         from unnest($3::json[]) as u(m)))`,
    [MAIL_TASK, MAIL_MAX_ATTEMPTS, messages.map((m) => JSON.stringify(m))],
  );
  return rows[0]!.n;
}

export interface Mailer {
  /** 'sent' when the SMTP server accepted it, 'written' when it went to MAIL_DIR. */
  send(message: MailMessage): Promise<'sent' | 'written'>;
}

/** SMTP when SMTP_URL is set; otherwise each message becomes an .eml file in MAIL_DIR. */
export function createMailer(config: Pick<Config, 'SMTP_URL' | 'MAIL_FROM' | 'MAIL_DIR'>, log: Logger): Mailer {
  if (config.SMTP_URL) {
    const transport = nodemailer.createTransport(config.SMTP_URL);
    return {
      async send(message) {
        const info = await transport.sendMail({ from: config.MAIL_FROM, ...message });
        log.info({ to: message.to, subject: message.subject, messageId: info.messageId }, 'e-mail sent');
        return 'sent';
      },
    };
  }
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
  return {
    async send(message) {
      const info = await transport.sendMail({ from: config.MAIL_FROM, ...message });
      await mkdir(config.MAIL_DIR, { recursive: true });
      const file = join(config.MAIL_DIR, `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomUUID()}.eml`);
      // written under a temporary name first, so a reader of the folder never sees half a message
      await writeFile(`${file}.tmp`, info.message);
      await rename(`${file}.tmp`, file);
      log.info({ to: message.to, subject: message.subject, file }, 'e-mail written (no SMTP_URL)');
      return 'written';
    },
  };
}

export interface MailDeps {
  config: Config;
  metrics: Metrics;
  logger: Logger;
}

/** The `mail.send` task; a throw makes the job system retry it with backoff. */
export function mailTasks(deps: MailDeps): TaskList {
  const mailer = createMailer(deps.config, deps.logger);
  return {
    [MAIL_TASK]: async (payload) => {
      if (!Value.Check(MailMessage, payload)) {
        // a payload that does not validate never will: retrying cannot help
        deps.logger.error({ payload }, 'mail.send: invalid payload, dropped');
        deps.metrics.mails.inc({ outcome: 'dropped' });
        return;
      }
      try {
        deps.metrics.mails.inc({ outcome: await mailer.send(payload) });
      } catch (err) {
        deps.metrics.mails.inc({ outcome: 'failed' });
        throw err;
      }
    },
  };
}
