// How Lumi shows cost, elapsed time and utilization: the same rules as lumi_magics/numbers.py.
import type { IJob } from './api';

const SMALLEST_USD = 0.000001;

/** Dollars with two significant digits below $1 ($0.0000079), cents above ($3.95); <$0.000001 for a tiny amount. */
export function money(usd: number | null | undefined): string {
  if (usd === null || usd === undefined) {
    return '—';
  }
  if (usd === 0) {
    return '$0';
  }
  if (usd < SMALLEST_USD) {
    return '<$0.000001';
  }
  const decimals = Math.max(2, 1 - Math.floor(Math.log10(usd)));
  return `$${usd.toFixed(decimals)}`;
}

/** 3.5 s below 10 s, 42 s, 2 min 05 s, 1 h 02 min. */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return '—';
  }
  const s = Math.max(seconds, 0);
  if (s < 10) {
    return `${s.toFixed(1)} s`;
  }
  if (s < 60) {
    return `${s.toFixed(0)} s`;
  }
  const whole = Math.floor(s);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (whole < 3600) {
    return `${Math.floor(whole / 60)} min ${pad(whole % 60)} s`;
  }
  return `${Math.floor(whole / 3600)} h ${pad(Math.floor((whole % 3600) / 60))} min`;
}

/** A utilization in [0, 1] as whole percent. */
export function percent(fraction: number | null | undefined): string {
  return fraction === null || fraction === undefined ? '—' : `${Math.round(fraction * 100)}%`;
}

/** A job's elapsed time on the dispatcher's clock: from submission to its end (or `now`, unix seconds). */
export function jobElapsed(job: IJob, now: number): number | null {
  return job.submitted_at === null ? null : (job.finished_at ?? now) - job.submitted_at;
}

/** When `at` is, seen from `now` (both unix seconds): "in 42 s", "3.5 s ago". */
export function relative(at: number | null | undefined, now: number): string {
  if (at === null || at === undefined) {
    return '—';
  }
  return at >= now ? `in ${duration(at - now)}` : `${duration(now - at)} ago`;
}
