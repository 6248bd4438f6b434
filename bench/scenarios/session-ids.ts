/** Session ids of the session-completion scenario (shared by its setup and the load generator's requests). */

/** Devices (each with one open session per run) by bench size: more than a run completes. */
export const SESSION_DEVICES = { tiny: 2_000, small: 20_000, default: 150_000 } as const;

/** The id of the session that request `i` completes, of `count` (past the last, ids repeat: idempotent repeats). */
export const sessionId = (i: number, count: number) => `00000000-0000-4000-8000-${((i % count) + 1).toString(16).padStart(12, '0')}`;
