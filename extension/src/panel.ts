// The Lumi sidebar: polls /lumi/api/snapshot while visible and renders it.
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { type IConnected, type IJob, postAction, requestAPI, type Snapshot } from './api';
import {
  h,
  type IHistory,
  withCode,
  renderCluster,
  renderCosts,
  renderDeployments,
  renderQueue,
  renderSchedules,
  renderStore,
  sectionError
} from './render';

/** Refresh at most this often while the panel is visible. */
export const REFRESH_MS = 2000;
const HISTORY = 60;
const MESSAGE_MS = 8000;

export class LumiPanel extends Widget {
  constructor() {
    super();
    this.id = 'lumi-panel';
    this.addClass('lumi-Panel');
    this.title.caption = 'Lumi: cluster, queue, schedules, deployments, store and cost';
    this._status = h('div', { class: 'lumi-Status' });
    this._body = h('div', { class: 'lumi-Body' });
    this.node.append(
      h('header', { class: 'lumi-Header' }, h('h2', {}, 'Lumi'), this._status),
      this._message,
      this._body
    );
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: REFRESH_MS, backoff: true, max: 30 * 1000 },
      name: 'lumi:panel',
      // No requests at all while another sidebar tab is shown or the browser tab is hidden.
      standby: () => this.isHidden || document.hidden
    });
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  /** Fetch now (unless the last answer is fresher than the refresh interval). */
  refresh(force = false): Promise<void> {
    if (!force && Date.now() - this._fetchedAt < REFRESH_MS) {
      return Promise.resolve();
    }
    return this._poll.refresh();
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  private async _refresh(): Promise<void> {
    this._fetchedAt = Date.now();
    let snapshot: Snapshot;
    try {
      snapshot = await requestAPI<Snapshot>('snapshot');
    } catch (error) {
      this._render({ connected: false, hint: `The Jupyter server's Lumi extension did not answer: ${error}` });
      throw error; // lets the poll back off
    }
    this._render(snapshot);
  }

  private _render(snapshot: Snapshot): void {
    this.toggleClass('lumi-mod-connected', snapshot.connected);
    if (!snapshot.connected) {
      this._status.replaceChildren(h('span', { class: 'lumi-Dot lumi-mod-off' }), 'not connected');
      this._body.replaceChildren(
        h(
          'div',
          { class: 'lumi-NotConnected' },
          h('h3', {}, 'Not connected'),
          h('p', {}, withCode(snapshot.hint)),
          h('button', { class: 'lumi-Button', onclick: () => void this.refresh(true) }, 'Retry now')
        )
      );
      return;
    }
    this._status.replaceChildren(
      h('span', { class: 'lumi-Dot lumi-mod-on' }),
      h('span', { title: snapshot.gateway }, 'connected'),
      h('span', { class: 'lumi-mod-muted' }, ` · ${new Date(snapshot.time * 1000).toLocaleTimeString()}`)
    );
    this._remember(snapshot);
    this._body.replaceChildren(...this._sections(snapshot));
  }

  private _sections(s: IConnected): HTMLElement[] {
    // a section the answer lacks (an older server extension) is left out
    const or = (name: keyof IConnected & string, title: string, render: () => HTMLElement) =>
      s.errors[name] ? sectionError(name, title, s.errors[name]) : s[name] === undefined ? null : render();
    const sections = [
      or('cluster', 'Cluster', () => renderCluster(s.cluster!, this._history)),
      or('jobs', 'Queue', () => renderQueue(s.jobs!, s.time, job => void this._cancel(job))),
      or('schedules', 'Schedules', () => renderSchedules(s.schedules!.schedules, s.time)),
      or('deployments', 'Deployments', () =>
        renderDeployments(
          s.deployments!,
          d => void this._act(`deployments/${encodeURIComponent(d.name)}/rollback`, {}, `Rolled back ${d.name}`),
          d => void this._act(`deployments/${encodeURIComponent(d.name)}/scale`, { replicas: 0 }, `Scaled ${d.name} to zero`)
        )
      ),
      or('store', 'Store', () => renderStore(s.store!)),
      or('costs', 'Cost', () => renderCosts(s.costs!))
    ];
    return sections.filter((e): e is HTMLElement => e !== null);
  }

  /** Keep the last readings of each worker for its sparklines. */
  private _remember(s: IConnected): void {
    const seen = new Set<string>();
    for (const w of s.cluster?.workers ?? []) {
      seen.add(w.id);
      const past = this._history.get(w.id) ?? { utilization: [], memory: [] };
      past.utilization = [...past.utilization, w.utilization].slice(-HISTORY);
      if (w.memory_used !== null) {
        past.memory = [...past.memory, w.memory_used].slice(-HISTORY);
      }
      this._history.set(w.id, past);
    }
    for (const id of [...this._history.keys()].filter(id => !seen.has(id))) {
      this._history.delete(id);
    }
  }

  private _cancel(job: IJob): Promise<void> {
    return this._act(`jobs/${encodeURIComponent(job.id)}/cancel`, {}, `Cancelled ${job.label || job.id}`);
  }

  private async _act(path: string, body: object, done: string): Promise<void> {
    try {
      const answer = await postAction(path, body);
      this._say(answer.connected ? done : `Not connected: ${answer.hint}`, !answer.connected);
    } catch (error) {
      this._say(`${error instanceof Error ? error.message : error}`, true);
    }
    await this.refresh(true);
  }

  /** Show what an action did; a success fades after a few seconds, an error stays until the next action. */
  private _say(text: string, isError: boolean): void {
    this._message.className = isError ? 'lumi-Message lumi-mod-error' : 'lumi-Message';
    this._message.textContent = text;
    if (!isError) {
      setTimeout(() => {
        if (this._message.textContent === text) {
          this._message.textContent = '';
        }
      }, MESSAGE_MS);
    }
  }

  private readonly _poll: Poll;
  private readonly _status: HTMLElement;
  private readonly _body: HTMLElement;
  private readonly _message: HTMLElement = h('div', { class: 'lumi-Message', role: 'status' });
  private readonly _history = new Map<string, IHistory>();
  private _fetchedAt = 0;
}
