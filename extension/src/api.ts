// What the server extension (lumi_magics/server.py) answers under /lumi/api/, and how to ask it.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** What a worker is doing, as the dispatcher reports it (older backends omit it). */
export type WorkerDoing =
  | { kind: 'idle' }
  | { kind: 'job'; job: string; tier: string; tenant: string; label: string | null }
  | {
      kind: 'serving';
      endpoint: string;
      version: number;
      tier: string;
      tenant: string;
      /** Unix seconds. */
      since: number;
      batches: number;
      gpu_seconds: number;
    }
  | { kind: 'dead' };

export interface IWorker {
  id: string;
  host: string;
  device: string;
  target?: string;
  fallback: boolean;
  utilization: number;
  utilization_source: string;
  memory_used: number | null;
  memory_total: number | null;
  running: number;
  state: 'starting' | 'idle' | 'busy' | 'leased' | 'dead';
  /** "device": one of the pool's workers per GPU slot (jobs and GPU endpoints); "cpu": started for CPU-only endpoints. */
  role?: 'device' | 'cpu';
  doing?: WorkerDoing;
  /** The dispatcher's one-line rendering of `doing`, e.g. "serving mnist v3 since 12:01:07 (41 batches)". */
  activity?: string;
}

/** An endpoint replica leased on a worker of the dispatcher's pool. */
export interface ILease {
  id: string;
  endpoint: string;
  version: number;
  tier: string;
  tenant: string;
  worker: string;
  /** Unix seconds. */
  since: number;
  batches: number;
  gpu_seconds: number;
}

export interface ICluster {
  workers: IWorker[];
  queue: Record<string, number>;
  queue_cap: number;
  tiers: Record<string, { weight: number; cap: number }>;
  fallback: boolean;
  leases?: ILease[];
  /** Leases waiting for a worker. */
  pending_leases?: number;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface IJob {
  id: string;
  tenant: string;
  tier: string;
  state: JobState;
  position: number | null;
  tier_position: number | null;
  submitted_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  gpu_seconds: number;
  cost: number;
  device: string | null;
  worker: string | null;
  error: string | null;
  attempts: number;
  label: string | null;
}

export interface IDeployment {
  name: string;
  tenant: string;
  url: string;
  active_version: number;
  versions: { version: number; sha256: string; created_at: number }[];
  replicas: number;
  min_replicas: number;
  max_replicas: number;
  requests: number;
  rps: number;
  p50_ms: number | null;
  p99_ms: number | null;
  cost: number;
}

export interface ICosts {
  total: number;
  by_tenant: Record<string, number>;
  by_tier: Record<string, number>;
  by_endpoint: Record<string, number>;
  /** One row per endpoint and tenant, from the workers' own measurements (older backends omit it). */
  endpoints?: { endpoint: string; tenant: string; gpu_seconds: number; cost: number; runs: number }[];
  /** Cumulative cost over time, [[unix seconds, total so far], ...]. */
  series: [number, number][];
}

/** One store (`lumi.Dict`, `lumi.Queue`, `lumi.Volume`) as the gateway's `/v1/store` lists it. */
export interface IStoreRow {
  name: string;
  tenant: string;
  /** What its items take in the store's folder. */
  bytes: number;
}

export interface IStore {
  dicts: (IStoreRow & { keys: number })[];
  queues: (IStoreRow & { length: number; maxsize: number | null })[];
  volumes: (IStoreRow & { files: number })[];
}

export type RunState = JobState | 'refused';

/** One firing of a schedule. */
export interface IScheduleRun {
  /** Unix seconds. */
  at: number;
  job: string | null;
  state: RunState;
  seconds: number;
  cost: number;
  error: string | null;
}

export interface ISchedule {
  name: string;
  tenant: string;
  cron: string;
  state: 'active' | 'paused';
  /** Unix seconds; null when it will not run (paused). */
  next_run: number | null;
  /** What it runs, e.g. "function sweep" or "endpoint scorer". */
  target: string;
  tier: string;
  missed: 'skip' | 'once';
  /** Oldest first, at most 20. */
  runs: IScheduleRun[];
}

export interface IConnected {
  connected: true;
  gateway: string;
  /** The server's clock (unix seconds) when it answered. */
  time: number;
  cluster?: ICluster;
  jobs?: IJob[];
  deployments?: IDeployment[];
  costs?: ICosts;
  store?: IStore;
  schedules?: { schedules: ISchedule[] };
  /** Section -> why the gateway did not give it. */
  errors: Record<string, string>;
}

export interface INotConnected {
  connected: false;
  hint: string;
}

export type Snapshot = IConnected | INotConnected;

/** Call the server extension; throws with the server's message on an HTTP error. */
export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'lumi', 'api', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new Error(data.error || data.message || `${response.status} ${response.statusText}`);
  }
  return data as T;
}

/** POST an action (cancel, rollback, scale); resolves to the hint when not connected. */
export async function postAction(path: string, body: object = {}): Promise<{ connected: boolean; hint?: string }> {
  return requestAPI(path, { method: 'POST', body: JSON.stringify(body) });
}
