/** Job names of the sessions module, in a module of their own: the write path imports them without the job code. */
export const SUMMARIZE_TASK = 'session.summarize';
