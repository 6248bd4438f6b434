/** RFC 3339 (UTC) from epoch microseconds; fractional digits only as many as needed. */
export function formatUs(us: number): string {
  const ms = Math.floor(us / 1000);
  const iso = new Date(ms).toISOString(); // ...T10:00:00.123Z
  const micro = us - ms * 1000;
  return micro === 0 ? iso : `${iso.slice(0, -1)}${String(micro).padStart(3, '0')}Z`;
}

const UNIT_US = { s: 1e6, m: 60e6, h: 3_600e6, d: 86_400e6 } as const;

/** `90s`, `15m`, `1h`, `7d` → microseconds; null when malformed. */
export function parseDurationUs(text: string): number | null {
  const m = /^(\d{1,6})([smhd])$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * UNIT_US[m[2] as keyof typeof UNIT_US];
}

export const nowUs = (): number => Date.now() * 1000;
