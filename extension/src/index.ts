// The Lumi JupyterLab plugin: a left-sidebar panel and a palette command that opens it.
import { ILayoutRestorer, type JupyterFrontEnd, type JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';

import { LumiPanel } from './panel';

const OPEN = 'lumi:open-panel';

// A lamp: bulb and base; jp-icon3 lets the theme colour it.
const lumiIcon = new LabIcon({
  name: 'lumi:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<path d="M12 2a7 7 0 0 0-4 12.74V17a1 1 0 0 0 1 1h6a1 1 0 0 0 1-1v-2.26A7 7 0 0 0 12 2zm2.5 11.5-.5.3V16h-4v-2.2l-.5-.3a5 5 0 1 1 5 0z"/>' +
    '<rect x="9" y="19" width="6" height="2" rx="1"/><rect x="10" y="22" width="4" height="1.5" rx=".75"/>' +
    '</g></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'lumi-panel:plugin',
  description: 'Lumi sidebar: cluster, queue, schedules, deployments, store and cost, live.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (app: JupyterFrontEnd, palette: ICommandPalette | null, restorer: ILayoutRestorer | null) => {
    const panel = new LumiPanel();
    panel.title.icon = lumiIcon;
    app.shell.add(panel, 'left', { rank: 900 });
    restorer?.add(panel, panel.id);
    app.commands.addCommand(OPEN, {
      label: 'Lumi: Open panel',
      caption: 'Show the Lumi sidebar (cluster, queue, schedules, deployments, store, cost)',
      icon: lumiIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: OPEN, category: 'Lumi' });
  }
};

export default plugin;
