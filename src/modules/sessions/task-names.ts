/** Job names of the sessions module, in a module of their own: the write path imports them without the job code. */
export const SUMMARIZE_TASK = 'session.summarize';
/** The summaries of the sessions one completion flush moved, in one job. */
export const SUMMARIZE_BATCH_TASK = 'session.summarize_batch';
