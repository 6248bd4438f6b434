/** A number as JSON.stringify writes it: shortest exact decimal, `null` when not finite. */
export const jsonNumber = (x: number): string => (Number.isFinite(x) ? `${x}` : 'null');
