// Pure DOM rendering of the panel's sections from a snapshot; no state, no requests.
import type { ICluster, ICosts, IDeployment, IJob, ISchedule, IStore, IStoreRow, IWorker, JobState } from './api';
import { duration, jobElapsed, money, percent, relative } from './format';

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | ((event: Event) => void) | undefined>;

/** A tiny hyperscript: element, attributes (`on*` become listeners), children. */
export function h(tag: string, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === 'function') {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else if (value !== false && value !== undefined) {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      element.append(child instanceof Node ? child : String(child));
    }
  }
  return element;
}

const SVG = 'http://www.w3.org/2000/svg';

/** An inline SVG sparkline of `values` scaled to [0, max] (default: their maximum); CSS sets its size. */
export function sparkline(values: number[], title: string, max?: number): SVGSVGElement {
  const width = 100;
  const height = 24;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'lumi-Sparkline');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const tip = document.createElementNS(SVG, 'title');
  tip.textContent = title;
  svg.append(tip);
  if (values.length === 0) {
    return svg;
  }
  const top = max ?? Math.max(...values, Number.EPSILON);
  const points = (values.length === 1 ? [values[0], values[0]] : values).map((v, i, all) => {
    const x = (i / (all.length - 1)) * width;
    const y = height - 1 - (Math.min(Math.max(v, 0), top) / top) * (height - 2);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const area = document.createElementNS(SVG, 'polygon');
  area.setAttribute('class', 'lumi-Sparkline-area');
  area.setAttribute('points', `0,${height} ${points.join(' ')} ${width},${height}`);
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('class', 'lumi-Sparkline-line');
  line.setAttribute('points', points.join(' '));
  line.setAttribute('vector-effect', 'non-scaling-stroke');
  svg.append(area, line);
  return svg;
}

export function bytes(n: number | null): string {
  if (n === null) {
    return '—';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

function ms(value: number | null): string {
  return value === null || value === undefined ? '—' : `${value.toFixed(value < 10 ? 1 : 0)} ms`;
}

function section(name: string, title: string, ...body: (Child | Child[])[]): HTMLElement {
  return h('section', { class: 'lumi-Section', 'data-section': name }, h('h3', { class: 'lumi-Section-title' }, title), ...body);
}

/** Text with `code` spans rendered as <code>. */
export function withCode(text: string): (string | HTMLElement)[] {
  return text.split('`').map((part, i) => (i % 2 ? h('code', {}, part) : part));
}

export function sectionError(name: string, title: string, message: string): HTMLElement {
  return section(name, title, h('p', { class: 'lumi-Error' }, message));
}

/** History of one worker's readings, kept by the panel between refreshes. */
export interface IHistory {
  utilization: number[];
  memory: number[];
}

function clock(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toLocaleTimeString();
}

/** What a worker is doing: the endpoint and version it serves, the job it runs, or the dispatcher's words. */
function workerActivity(w: IWorker): HTMLElement | null {
  const doing = w.doing;
  if (doing?.kind === 'serving') {
    return h(
      'div',
      {
        class: 'lumi-Worker-activity',
        'data-activity': 'serving',
        'data-endpoint': doing.endpoint,
        'data-version': doing.version,
        title: w.activity ?? `serving ${doing.endpoint} v${doing.version} since ${clock(doing.since)}`
      },
      'serving ',
      h('span', { class: 'lumi-Worker-endpoint' }, doing.endpoint),
      ' ',
      h('span', { class: 'lumi-Version lumi-mod-active' }, `v${doing.version}`),
      h(
        'span',
        { class: 'lumi-Stat', title: `${(doing.gpu_seconds ?? 0).toFixed(3)} GPU seconds since ${clock(doing.since)}` },
        ` · ${doing.batches} batch${doing.batches === 1 ? '' : 'es'}`
      ),
      ` · ${doing.tenant} · ${doing.tier}`
    );
  }
  if (doing?.kind === 'job') {
    return h(
      'div',
      { class: 'lumi-Worker-activity', 'data-activity': 'job', 'data-job-id': doing.job, title: w.activity ?? `job ${doing.job}` },
      'job ',
      h('code', { class: 'lumi-Worker-job' }, doing.job.slice(0, 8)),
      [doing.tier, doing.tenant].filter(Boolean).map(part => ` · ${part}`),
      doing.label ? h('span', { class: 'lumi-mod-muted' }, ` · ${doing.label}`) : null
    );
  }
  if (doing?.kind === 'idle' || doing?.kind === 'dead') {
    return null; // the state says it (and "idle" under a starting worker would mislead)
  }
  // a kind this panel does not know yet, or no `doing`: the dispatcher's words, where they say more than the state
  return w.activity && w.activity !== w.state
    ? h('div', { class: 'lumi-Worker-activity lumi-mod-muted', 'data-activity': 'other' }, w.activity)
    : null;
}

export function renderCluster(cluster: ICluster, history: Map<string, IHistory>): HTMLElement {
  const queued = Object.entries(cluster.queue).filter(([, depth]) => depth > 0);
  const depth = queued.reduce((sum, [, d]) => sum + d, 0);
  const summary = h(
    'p',
    { class: 'lumi-Summary' },
    `${cluster.workers.length} worker${cluster.workers.length === 1 ? '' : 's'} · ${depth} queued`,
    queued.length ? ` (${queued.map(([tier, d]) => `${tier} ${d}`).join(', ')})` : '',
    ` · cap ${cluster.queue_cap}`,
    cluster.leases
      ? h(
          'span',
          { class: 'lumi-Leases', 'data-leases': cluster.leases.length, title: 'endpoint replicas on the pool\'s workers' },
          ` · ${cluster.leases.length} lease${cluster.leases.length === 1 ? '' : 's'}`,
          cluster.pending_leases ? ` (${cluster.pending_leases} pending)` : ''
        )
      : null
  );
  const fallback = cluster.fallback
    ? h(
        'p',
        { class: 'lumi-Fallback', 'data-fallback': true },
        h('strong', {}, 'CPU fallback'),
        ': no GPU here, so work runs on the CPU; utilization is each worker\'s busy fraction.'
      )
    : null;
  const workers = cluster.workers.map(w => {
    const past = history.get(w.id) ?? { utilization: [w.utilization], memory: [] };
    const memory =
      w.memory_total !== null && w.memory_used !== null
        ? h(
            'div',
            { class: 'lumi-Metric' },
            h('span', { class: 'lumi-Metric-label' }, 'memory'),
            sparkline(past.memory, `memory of ${w.id}`, w.memory_total),
            h('span', { class: 'lumi-Metric-value' }, `${bytes(w.memory_used)} / ${bytes(w.memory_total)}`)
          )
        : h(
            'div',
            { class: 'lumi-Metric' },
            h('span', { class: 'lumi-Metric-label' }, 'memory'),
            h('span', { class: 'lumi-mod-muted', title: 'device memory is measured with NVML on GPUs' }, w.fallback ? 'n/a on the CPU fallback' : 'not reported')
          );
    // a worker serving an endpoint reads as leased whatever its state says (a CPU worker may say busy)
    const leased = w.doing?.kind === 'serving' && w.state !== 'leased' ? ' lumi-mod-leased' : '';
    return h(
      'div',
      {
        class: `lumi-Worker lumi-mod-${w.state}${leased}`,
        'data-worker-id': w.id,
        'data-role': w.role
      },
      h(
        'div',
        { class: 'lumi-Worker-head' },
        h('span', { class: 'lumi-Worker-name', title: `${w.id} on ${w.host}` }, w.id.replace(/^lumi-worker-/, 'worker ')),
        w.role === 'cpu'
          ? h('span', { class: 'lumi-Badge lumi-mod-role', 'data-role': 'cpu', title: 'a CPU worker, started on demand for CPU-only endpoints' }, 'cpu-only')
          : null,
        h('span', { class: 'lumi-Badge', title: w.fallback ? 'CPU fallback' : w.device }, w.device),
        h('span', { class: `lumi-State lumi-mod-${w.state}`, title: `${w.running} running` }, w.state)
      ),
      workerActivity(w),
      h(
        'div',
        { class: 'lumi-Metric' },
        h('span', { class: 'lumi-Metric-label' }, 'util'),
        sparkline(past.utilization, `utilization of ${w.id} (${w.utilization_source})`, 1),
        h('span', { class: 'lumi-Metric-value', title: w.utilization_source }, percent(w.utilization))
      ),
      memory
    );
  });
  return section(
    'cluster',
    'Cluster',
    summary,
    fallback,
    workers.length ? workers : h('p', { class: 'lumi-Empty' }, 'No workers yet: they start with the first job.')
  );
}

const ACTIVE: ReadonlySet<string> = new Set(['queued', 'running']);
const FINISHED_SHOWN = 20;

/** The label backend/lumi/runtime/fanout.py gives each item's job of a `lumi.map`: "<prefix> #<index>". */
const MAP_ITEM = /^(lumi\.map .+ \([0-9a-f]{8}\)) #\d+$/;

/** The item jobs of one `lumi.map` that the listing holds (newest first, as listed). */
export interface IMapJobs {
  prefix: string;
  jobs: IJob[];
}

/** The jobs with each map's item jobs gathered into one entry, in the place of its newest item. */
export function groupMaps(jobs: IJob[]): (IJob | IMapJobs)[] {
  const maps = new Map<string, IMapJobs>();
  const entries: (IJob | IMapJobs)[] = [];
  for (const job of jobs) {
    const prefix = job.label?.match(MAP_ITEM)?.[1];
    const map = prefix === undefined ? undefined : maps.get(prefix);
    if (prefix === undefined) {
      entries.push(job);
    } else if (map) {
      map.jobs.push(job);
    } else {
      const entry = { prefix, jobs: [job] };
      maps.set(prefix, entry);
      entries.push(entry);
    }
  }
  return entries;
}

const isMap = (entry: IJob | IMapJobs): entry is IMapJobs => 'prefix' in entry;
const isActive = (entry: IJob | IMapJobs) => (isMap(entry) ? entry.jobs.some(j => ACTIVE.has(j.state)) : ACTIVE.has(entry.state));

function renderJob(job: IJob, now: number, onCancel: (job: IJob) => void): HTMLElement {
  return h(
    'div',
    { class: `lumi-Row lumi-Job lumi-mod-${job.state}`, 'data-job-id': job.id, 'data-state': job.state },
    h(
      'div',
      { class: 'lumi-Row-head' },
      h('span', { class: 'lumi-Row-name', title: job.id }, job.label || job.id.slice(0, 8)),
      h('span', { class: `lumi-State lumi-mod-${job.state}`, title: job.error ?? '' }, job.state),
      h('span', { class: 'lumi-Cost', title: `${job.gpu_seconds.toFixed(3)} s on ${job.device ?? '—'}` }, money(job.cost)),
      ACTIVE.has(job.state)
        ? h('button', { class: 'lumi-Button', title: `cancel job ${job.id}`, onclick: () => onCancel(job) }, 'Cancel')
        : null
    ),
    h(
      'div',
      { class: 'lumi-Row-detail' },
      `${job.tenant} · ${job.tier}`,
      job.position === null ? '' : ` · position ${job.position}`,
      ` · ${duration(jobElapsed(job, now))}`,
      job.error ? h('div', { class: 'lumi-Error' }, job.error) : null
    )
  );
}

/** One row for a whole `lumi.map`: a bar of its finished items over those listed so far, counts and summed cost. */
function renderMap(map: IMapJobs, now: number): HTMLElement {
  const count = (state: JobState) => map.jobs.filter(j => j.state === state).length;
  const [done, failed, running, queued, cancelled] = (['done', 'failed', 'running', 'queued', 'cancelled'] as const).map(count);
  const seen = map.jobs.length;
  const finished = done + failed + cancelled;
  const state = running + queued ? 'running' : failed ? 'failed' : cancelled ? 'cancelled' : 'done';
  const cost = map.jobs.reduce((sum, j) => sum + j.cost, 0);
  const start = Math.min(...map.jobs.map(j => j.submitted_at ?? now));
  const end = running + queued ? now : Math.max(...map.jobs.map(j => j.finished_at ?? now));
  const width = (n: number) => `width: ${((100 * n) / seen).toFixed(1)}%`;
  const first = map.jobs[map.jobs.length - 1];
  return h(
    'div',
    {
      class: `lumi-Row lumi-Map lumi-mod-${state}`,
      'data-map': map.prefix,
      'data-state': state,
      'data-seen': seen,
      'data-done': done,
      'data-failed': failed,
      'data-running': running,
      'data-queued': queued
    },
    h(
      'div',
      { class: 'lumi-Row-head' },
      h('span', { class: 'lumi-Row-name', title: `${map.prefix}: one job per item` }, map.prefix),
      h('span', { class: `lumi-State lumi-mod-${state}` }, state),
      h('span', { class: 'lumi-Cost', title: `summed over its ${seen} item jobs` }, money(cost))
    ),
    h(
      'div',
      {
        class: 'lumi-Progress',
        role: 'progressbar',
        'aria-valuemin': 0,
        'aria-valuemax': seen,
        'aria-valuenow': finished,
        title: `${finished} of the ${seen} items submitted so far have finished (the map submits as it goes)`
      },
      h('div', { class: 'lumi-Progress-done', style: width(done) }),
      h('div', { class: 'lumi-Progress-failed', style: width(failed + cancelled) })
    ),
    h(
      'div',
      { class: 'lumi-Row-detail lumi-Stats' },
      h('span', { class: 'lumi-Stat lumi-Map-fraction', 'data-stat': 'finished' }, `${finished}/${seen}`),
      Object.entries({ done, failed, running, queued, cancelled })
        .filter(([name, n]) => n > 0 || name !== 'cancelled')
        .map(([name, n]) => h('span', { class: 'lumi-Stat', 'data-stat': name }, `${n} ${name}`)),
      h('span', { class: 'lumi-Stat' }, `${first.tenant} · ${first.tier}`),
      h('span', { class: 'lumi-Stat', 'data-stat': 'elapsed' }, duration(end - start))
    )
  );
}

/** Active jobs and maps first, then the newest finished; a `lumi.map`'s item jobs are one row. */
export function renderQueue(jobs: IJob[], now: number, onCancel: (job: IJob) => void): HTMLElement {
  const entries = groupMaps(jobs);
  const active = entries.filter(isActive);
  const finished = entries.filter(e => !isActive(e)).slice(0, FINISHED_SHOWN);
  const rows = [...active, ...finished].map(e => (isMap(e) ? renderMap(e, now) : renderJob(e, now, onCancel)));
  const hidden = entries.length - rows.length;
  return section(
    'queue',
    'Queue',
    rows.length ? rows : h('p', { class: 'lumi-Empty' }, 'No jobs yet: run a %%remote cell.'),
    hidden > 0 ? h('p', { class: 'lumi-mod-muted' }, `${hidden} older finished job(s) not shown`) : null
  );
}

export function renderDeployments(
  deployments: IDeployment[],
  onRollback: (d: IDeployment) => void,
  onScaleToZero: (d: IDeployment) => void
): HTMLElement {
  const rows = deployments.map(d => {
    const versions = d.versions.map(v => v.version).sort((a, b) => a - b);
    const canRollback = versions.some(v => v < d.active_version);
    return h(
      'div',
      { class: 'lumi-Row lumi-Deployment', 'data-deployment': d.name, 'data-version': d.active_version },
      h(
        'div',
        { class: 'lumi-Row-head' },
        h('span', { class: 'lumi-Row-name', title: d.url }, d.name),
        h(
          'span',
          { class: 'lumi-Versions' },
          versions.map(v =>
            h('span', { class: v === d.active_version ? 'lumi-Version lumi-mod-active' : 'lumi-Version', title: v === d.active_version ? 'active' : '' }, `v${v}`)
          )
        ),
        h('span', { class: 'lumi-Cost' }, money(d.cost))
      ),
      h(
        'div',
        { class: 'lumi-Row-detail' },
        h('span', { class: 'lumi-Stat', title: `min ${d.min_replicas}, max ${d.max_replicas}` }, `${d.replicas} replica${d.replicas === 1 ? '' : 's'}`),
        h('span', { class: 'lumi-Stat' }, `${d.rps.toFixed(d.rps < 10 ? 1 : 0)} req/s`),
        h('span', { class: 'lumi-Stat', 'data-stat': 'p50' }, `p50 ${ms(d.p50_ms)}`),
        h('span', { class: 'lumi-Stat', 'data-stat': 'p99' }, `p99 ${ms(d.p99_ms)}`)
      ),
      h(
        'div',
        { class: 'lumi-Actions' },
        h(
          'button',
          { class: 'lumi-Button', disabled: !canRollback, title: 'serve the previous version again', onclick: () => onRollback(d) },
          'Rollback'
        ),
        h(
          'button',
          { class: 'lumi-Button', disabled: d.replicas === 0, title: 'stop all replicas (the next request starts one)', onclick: () => onScaleToZero(d) },
          'Scale to zero'
        )
      )
    );
  });
  return section('deployments', 'Deployments', rows.length ? rows : h('p', { class: 'lumi-Empty' }, 'No deployments yet: run a %%deploy cell.'));
}

function breakdown(title: string, totals: Record<string, number>): HTMLElement {
  const entries = Object.entries(totals).sort((a, b) => b[1] - a[1]);
  return h(
    'div',
    { class: 'lumi-Breakdown', 'data-breakdown': title },
    h('h4', {}, `by ${title}`),
    entries.length
      ? h('dl', {}, entries.flatMap(([name, cost]) => [h('dt', {}, name), h('dd', { class: 'lumi-Cost' }, money(cost))]))
      : h('p', { class: 'lumi-Empty' }, 'none')
  );
}

export function renderCosts(costs: ICosts): HTMLElement {
  const values = costs.series.map(([, total]) => total);
  const since = costs.series.length ? new Date(costs.series[0][0] * 1000).toLocaleTimeString() : null;
  return section(
    'costs',
    'Cost',
    h(
      'div',
      { class: 'lumi-Total' },
      h('span', { class: 'lumi-Total-value', 'data-total': costs.total }, money(costs.total)),
      sparkline(values, 'cumulative cost over time')
    ),
    since ? h('p', { class: 'lumi-mod-muted lumi-Total-span' }, `total since the first metered work, at ${since}`) : null,
    h(
      'div',
      { class: 'lumi-Breakdowns' },
      breakdown('tenant', costs.by_tenant),
      breakdown('tier', costs.by_tier),
      breakdown('endpoint', costs.by_endpoint)
    )
  );
}

type Column<T> = [heading: string, cell: (row: T) => string | number];

function storeTable<T extends IStoreRow>(kind: string, title: string, rows: T[], columns: Column<T>[]): HTMLElement {
  const all: Column<T>[] = [['name', r => r.name], ['tenant', r => r.tenant], ...columns, ['size', r => bytes(r.bytes)]];
  return h(
    'div',
    { class: 'lumi-Store', 'data-store': kind },
    h('h4', {}, title),
    rows.length
      ? h(
          'table',
          { class: 'lumi-Table' },
          h('thead', {}, h('tr', {}, all.map(([heading]) => h('th', { 'data-col': heading }, heading)))),
          h(
            'tbody',
            {},
            rows.map(r =>
              h(
                'tr',
                { 'data-name': r.name, 'data-tenant': r.tenant },
                all.map(([heading, cell]) => h('td', { 'data-col': heading, title: heading === 'name' ? r.name : undefined }, cell(r)))
              )
            )
          )
        )
      : h('p', { class: 'lumi-Empty' }, 'none')
  );
}

export function renderStore(store: IStore): HTMLElement {
  const empty = !store.dicts.length && !store.queues.length && !store.volumes.length;
  return section(
    'store',
    'Store',
    empty
      ? h('p', { class: 'lumi-Empty' }, 'Nothing stored yet: a lumi.Dict, lumi.Queue or lumi.Volume shows here.')
      : [
          storeTable('dicts', 'Dicts', store.dicts, [['keys', d => d.keys]]),
          storeTable('queues', 'Queues', store.queues, [['length', q => (q.maxsize === null ? q.length : `${q.length}/${q.maxsize}`)]]),
          storeTable('volumes', 'Volumes', store.volumes, [['files', v => v.files]])
        ]
  );
}

export function renderSchedules(schedules: ISchedule[], now: number): HTMLElement {
  const rows = schedules.map(s => {
    const last = s.runs.length ? s.runs[s.runs.length - 1] : null;
    const paused = s.state === 'paused';
    return h(
      'div',
      { class: `lumi-Row lumi-Schedule lumi-mod-${s.state}`, 'data-schedule': s.name, 'data-state': s.state, 'data-runs': s.runs.length },
      h(
        'div',
        { class: 'lumi-Row-head' },
        h('span', { class: 'lumi-Row-name', title: `${s.name} (${s.tenant})` }, s.name),
        h('code', { class: 'lumi-Cron', title: `missed runs: ${s.missed}` }, s.cron),
        paused ? h('span', { class: 'lumi-Badge lumi-mod-paused' }, 'paused') : null
      ),
      h(
        'div',
        { class: 'lumi-Row-detail lumi-Stats' },
        h(
          'span',
          { class: 'lumi-Stat', 'data-stat': 'next', title: s.next_run === null ? '' : clock(s.next_run) },
          paused ? 'paused' : s.next_run === null ? 'no next run' : `next ${relative(s.next_run, now)}`
        ),
        last
          ? h(
              'span',
              { class: 'lumi-Stat', 'data-stat': 'last', title: `last run at ${clock(last.at)}` },
              'last ',
              h('span', { class: `lumi-State lumi-mod-${last.state}`, title: last.error ?? '' }, last.state),
              ` ${duration(last.seconds)} · ${money(last.cost)}`
            )
          : h('span', { class: 'lumi-Stat', 'data-stat': 'last' }, 'not run yet'),
        h('span', { class: 'lumi-Stat', 'data-stat': 'runs' }, `${s.runs.length} run${s.runs.length === 1 ? '' : 's'}`)
      ),
      h('div', { class: 'lumi-Row-detail' }, `${s.target} · ${s.tenant} · ${s.tier}`),
      last?.error ? h('div', { class: 'lumi-Error' }, last.error) : null
    );
  });
  return section(
    'schedules',
    'Schedules',
    rows.length ? rows : h('p', { class: 'lumi-Empty' }, 'No schedules yet: lumi.schedule(fn, cron=...) adds one.')
  );
}
