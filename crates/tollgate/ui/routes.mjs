// Every view of the dashboard by its name in the URL hash, and the side
// navigation. The shell (app.mjs) reads this; the views themselves live in
// views.mjs (spend and drill-downs), manage.mjs (keys, budgets) and
// finops.mjs (reconciliation, what-if), none of which imports this file.

import { agents, anomalies, audit, costs, models, overview, prompts, quality, request, requests, run, spenders, tokens } from './views.mjs';
import { budgets, keys } from './manage.mjs';
import { reconciliation, whatif } from './finops.mjs';

export const VIEWS = {
  overview: { title: 'Overview', render: overview },
  spenders: { title: 'Top spenders', render: spenders },
  tokens: { title: 'Tokens & caching', render: tokens },
  models: { title: 'Model mix', render: models },
  costs: { title: 'Cost per request', render: costs },
  requests: { title: 'Request log', render: requests },
  request: { title: 'Request', render: request, parent: 'requests' },
  agents: { title: 'Agent runs', render: agents },
  run: { title: 'Run', render: run, parent: 'agents' },
  prompts: { title: 'Prompt versions', render: prompts },
  budgets: { title: 'Budgets', render: budgets },
  keys: { title: 'Keys', render: keys },
  anomalies: { title: 'Anomalies', render: anomalies },
  audit: { title: 'Audit log', render: audit },
  quality: { title: 'Errors & data quality', render: quality },
  reconciliation: { title: 'Reconciliation', render: reconciliation },
  whatif: { title: 'What-if', render: whatif },
};

export const NAV = [
  ['Spend', [['overview', 'Overview'], ['spenders', 'Top spenders'], ['models', 'Model mix'], ['tokens', 'Tokens & caching'], ['costs', 'Cost per request']]],
  ['Drill down', [['requests', 'Request log'], ['agents', 'Agent runs'], ['prompts', 'Prompt versions']]],
  ['Watch', [['anomalies', 'Anomalies'], ['quality', 'Errors & data quality'], ['audit', 'Audit log']]],
  ['FinOps', [['reconciliation', 'Reconciliation'], ['whatif', 'What-if']]],
  ['Manage', [['keys', 'Keys'], ['budgets', 'Budgets & alerts']]],
];
