// The edgefleet dashboard: polls the collector's JSON API (relative URLs, so the page also
// works behind a reverse proxy under a path prefix) every 2 s and redraws the fleet table, the
// latency and accuracy charts (inline SVG), the rollouts and the recent events.
//
// Device names, versions, reasons and rollout ids come from devices and operators: every string
// from the API goes into the page through textContent or setAttribute, never as markup.
'use strict';

(function () {
  const POLL_MS = 2000;
  // The fleet table shows this many devices (the first by name); /api/devices pages the rest.
  const DEVICES_SHOWN = 200;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#2563eb', '#d97706', '#059669', '#7c3aed', '#dc2626', '#0891b2', '#65a30d',
                   '#db2777', '#4b5563', '#9333ea'];
  const LATENCY_STATS = [
    {key: 'p50', dash: ''},
    {key: 'p95', dash: '6 3'},
    {key: 'p99', dash: '2 3'},
  ];
  const BAD_EVENTS = new Set(['failed', 'rolled_back', 'rejected']);
  const ROLLOUT_STATES = new Set(['running', 'paused', 'completed', 'halted', 'aborted']);
  const WAVE_STATES = new Set(['waiting', 'running', 'done', 'halted']);

  // One colour per model@version for the whole session, so a line keeps its colour as others
  // come and go.
  const colours = new Map();
  function colourOf(key) {
    if (!colours.has(key)) colours.set(key, PALETTE[colours.size % PALETTE.length]);
    return colours.get(key);
  }

  // ---- DOM helpers: text only ----

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
  }
  function byId(id) {
    return document.getElementById(id);
  }
  function str(value) {
    return typeof value === 'string' ? value : '';
  }
  function num(value) {
    return typeof value === 'number' && Number.isFinite(value) ? value : null;
  }

  // ---- formatting ----

  function ago(ms, now) {
    if (num(ms) === null) return 'never';
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 120) return s + 's ago';
    if (s < 7200) return Math.round(s / 60) + 'm ago';
    if (s < 172800) return Math.round(s / 3600) + 'h ago';
    return Math.round(s / 86400) + 'd ago';
  }
  function clock(ms) {
    if (num(ms) === null) return '-';
    const d = new Date(ms);
    return [d.getHours(), d.getMinutes(), d.getSeconds()]
        .map((n) => String(n).padStart(2, '0')).join(':');
  }
  function iso(ms) {
    return num(ms) === null ? '' : new Date(ms).toISOString();
  }
  function plural(n, word) {
    return n + ' ' + word + (n === 1 ? '' : 's');
  }

  // ---- header ----

  function renderSummary(summary) {
    const d = (summary && summary.devices) || {};
    byId('count-total').textContent = num(d.total) ?? '-';
    byId('count-online').textContent = num(d.online) ?? '-';
    byId('count-offline').textContent = num(d.offline) ?? '-';
    const messages = (summary && summary.messages) || {};
    const missing = byId('count-missing');
    missing.textContent = num(messages.missing) ?? '-';
    missing.className = num(messages.missing) > 0 ? 'missing' : '';
    const status = byId('collector-status');
    const collector = (summary && summary.collector) || {};
    const connected = collector.connected === true;
    const behind = collector.behind === true;
    const dropped = num(collector.broker_dropped);
    status.className = connected && !behind && !(dropped > 0) ? 'connected' : 'disconnected';
    status.textContent = (connected ? 'broker connected' : 'broker disconnected') +
        (behind ? ', collector behind by ' + Math.round((num(collector.lag_ms) ?? 0) / 1000) + ' s'
                : '') +
        (dropped > 0 ? ', broker dropped ' + plural(dropped, 'message') : '');
  }

  // ---- fleet ----

  function renderDevices(doc, now) {
    const devices = Array.isArray(doc && doc.devices) ? doc.devices : [];
    const rows = devices.map((d) => {
      const status = d.status && typeof d.status === 'object' ? d.status : {};
      const models = Array.isArray(status.models) ? status.models : [];
      const versions = [];
      const modelCell = el('td', {class: 'models'});
      for (const m of models) {
        const name = str(m && m.name);
        const active = m && m.active && typeof m.active === 'object' ? m.active : null;
        const standby = m && m.standby && typeof m.standby === 'object' ? m.standby : null;
        if (active) versions.push(name + '=' + str(active.version));
        modelCell.append(el('div', {class: 'model', 'data-model': name},
            active ? name + ' ' + str(active.version) + ' (' + str(active.slot) + ')'
                   : name + ' (no active slot)',
            standby ? el('span', {class: 'standby'},
                ' standby ' + str(standby.version) + ' (' + str(standby.slot) + ')') : null));
      }
      if (models.length === 0) modelCell.textContent = '-';
      const online = d.online === true;
      const groups = Array.isArray(status.groups) ? status.groups.map(str).join(', ') : '';
      return el('tr', {'data-device': str(d.device), 'data-versions': versions.join(',')},
          el('td', {class: 'device'}, str(d.device)),
          el('td', {class: online ? 'online' : 'offline'}, online ? 'online' : 'offline'),
          el('td', {class: 'groups'}, groups || '-'),
          modelCell,
          el('td', {class: 'last-seen', title: iso(d.last_seen_ms)}, ago(d.last_seen_ms, now)),
          el('td', {class: num(d.missing) > 0 ? 'missing' : 'count',
                    title: plural(num(d.numbered) ?? 0, 'numbered message') + ' stored'},
             String(num(d.missing) ?? '-')));
    });
    byId('devices').tBodies[0].replaceChildren(...rows);
    byId('devices-empty').hidden = rows.length > 0;
    // The table shows the first page by name; the rest stays in the API (/api/devices?after=).
    const matching = num(doc && doc.matching) ?? rows.length;
    const more = byId('devices-more');
    more.hidden = matching <= rows.length;
    more.textContent = 'showing the first ' + rows.length + ' of ' + matching + ' devices';
  }

  // ---- charts ----

  // lines: [{series: 'digits@1.1.0', stat, colour, dash, points: [[t, value|null], ...]}]
  function drawChart(box, lines, opts) {
    const drawn = lines.filter((l) => l.points.some((p) => p[1] !== null));
    if (drawn.length === 0) {
      box.replaceChildren(el('div', {class: 'no-data'}, 'no data yet'));
      return;
    }
    const W = 640, H = 240, L = 56, R = 14, T = 12, B = 40;
    let t0 = Infinity, t1 = -Infinity, vMax = 0;
    for (const l of drawn) {
      for (const [t, v] of l.points) {
        if (v === null) continue;
        t0 = Math.min(t0, t);
        t1 = Math.max(t1, t);
        vMax = Math.max(vMax, v);
      }
    }
    if (t1 === t0) {
      t0 -= 30000;
      t1 += 30000;
    }
    const yMax = opts.yMax !== undefined ? opts.yMax : niceCeil(vMax * 1.1 || 1);
    const x = (t) => L + (t - t0) / (t1 - t0) * (W - L - R);
    const y = (v) => T + (1 - v / yMax) * (H - T - B);

    const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': opts.title});
    const axes = svg('g', {class: 'axes'});
    axes.append(svg('line', {x1: L, y1: T, x2: L, y2: H - B}));
    axes.append(svg('line', {x1: L, y1: H - B, x2: W - R, y2: H - B}));
    for (let i = 0; i <= 4; ++i) {
      const v = yMax * i / 4;
      axes.append(svg('line', {class: 'grid', x1: L, y1: y(v), x2: W - R, y2: y(v)}));
      axes.append(svg('text', {class: 'tick', x: L - 6, y: y(v) + 4, 'text-anchor': 'end'},
          opts.format(v)));
    }
    for (let i = 0; i <= 4; ++i) {
      const t = t0 + (t1 - t0) * i / 4;
      const anchor = i === 0 ? 'start' : i === 4 ? 'end' : 'middle';  // stay inside the box
      axes.append(svg('text', {class: 'tick', x: x(t), y: H - B + 16, 'text-anchor': anchor},
          clock(t)));
    }
    axes.append(svg('text', {class: 'axis-label', x: (L + W - R) / 2, y: H - 4,
                             'text-anchor': 'middle'}, 'time (window end)'));
    axes.append(svg('text', {class: 'axis-label', x: 12, y: (T + H - B) / 2,
                             'text-anchor': 'middle',
                             transform: `rotate(-90 12 ${(T + H - B) / 2})`}, opts.yLabel));
    root.append(axes);

    for (const l of drawn) {
      // A gap (null) starts a new sub-path; a lone point is a zero-length segment (a round dot).
      let d = '';
      let open = false;
      for (const [t, v] of l.points) {
        if (v === null) {
          open = false;
          continue;
        }
        const px = x(t).toFixed(1), py = y(Math.min(v, yMax)).toFixed(1);
        d += open ? ` L${px} ${py}` : ` M${px} ${py} L${px} ${py}`;
        open = true;
      }
      const path = svg('path', {class: 'series', 'data-series': l.series, 'data-stat': l.stat,
                                d: d.trim(), fill: 'none', stroke: l.colour,
                                'stroke-width': 2, 'stroke-linecap': 'round',
                                'stroke-linejoin': 'round', 'stroke-dasharray': l.dash || null});
      path.append(svg('title', {}, `${l.series} ${l.stat}`));
      root.append(path);
    }

    const legend = el('div', {class: 'legend'});
    const seen = new Set();
    for (const l of drawn) {
      if (seen.has(l.series)) continue;
      seen.add(l.series);
      const swatch = el('span', {class: 'swatch'});
      swatch.style.backgroundColor = l.colour;  // CSSOM, allowed by the CSP
      legend.append(el('span', {class: 'legend-item', 'data-series': l.series}, swatch,
          l.series));
    }
    box.replaceChildren(root, legend);
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (m * p >= v) return m * p;
    }
    return 10 * p;
  }

  function renderCharts(doc) {
    const series = Array.isArray(doc && doc.series) ? doc.series : [];
    const latency = [];
    const accuracy = [];
    for (const s of series) {
      const key = str(s.model) + '@' + str(s.version);
      const points = Array.isArray(s.points) ? s.points.filter((p) => num(p.t) !== null) : [];
      const colour = colourOf(key);
      for (const stat of LATENCY_STATS) {
        latency.push({series: key, stat: stat.key, colour, dash: stat.dash,
                      points: points.map((p) => [p.t, num(p[stat.key])])});
      }
      accuracy.push({series: key, stat: 'accuracy', colour, dash: '',
                     points: points.map((p) => [p.t, num(p.accuracy)])});
      accuracy.push({series: key, stat: 'golden', colour, dash: '6 3',
                     points: points.map((p) => [p.t, num(p.golden_accuracy)])});
    }
    drawChart(byId('latency-chart'), latency, {
      title: 'latency percentiles per model version',
      yLabel: 'ms',
      format: (v) => (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2)),
    });
    drawChart(byId('accuracy-chart'), accuracy, {
      title: 'accuracy per model version',
      yLabel: 'accuracy',
      yMax: 1,
      format: (v) => Math.round(v * 100) + '%',
    });
  }

  // ---- rollouts ----

  function renderRollouts(doc, now) {
    const rollouts = Array.isArray(doc && doc.rollouts) ? doc.rollouts : [];
    const cards = rollouts.map((r) => {
      const state = str(r.state);
      const badge = ROLLOUT_STATES.has(state) ? state : 'unknown';
      const card = el('div', {class: 'rollout', 'data-rollout': str(r.id), 'data-state': state});
      const finished = num(r.finished_ts) ? 'finished ' + ago(r.finished_ts, now) : null;
      card.append(el('div', {class: 'rollout-head'},
          el('span', {class: 'rollout-title'},
              str(r.model) + ' ' + str(r.version) + ' \u2192 ' + str(r.group)),
          el('span', {class: 'badge state-' + badge}, state),
          el('span', {class: 'rollout-meta', title: str(r.id)},
              str(r.id) + ' \u00b7 started ' + ago(r.started_ts, now) +
              (finished ? ' \u00b7 ' + finished : ''))));
      if (str(r.reason)) card.append(el('p', {class: 'rollout-reason'}, str(r.reason)));
      const d = r.devices && typeof r.devices === 'object' ? r.devices : {};
      card.append(el('div', {class: 'rollout-devices'},
          plural(num(d.total) ?? 0, 'device') + ': ' +
          ['succeeded', 'failed', 'updating', 'waiting', 'restored']
              .map((k) => (num(d[k]) ?? 0) + ' ' + k).join(' \u00b7 ')));
      const waves = Array.isArray(r.waves) ? r.waves : [];
      const list = el('div', {class: 'waves'});
      waves.forEach((w, i) => {
        const ws = str(w.state);
        const n = num(w.devices) ?? 0;
        const ok = num(w.succeeded) ?? 0, bad = num(w.failed) ?? 0, wait = num(w.pending) ?? 0;
        const bar = el('div', {class: 'bar', role: 'img',
                               'aria-label': `${ok} succeeded, ${bad} failed, ${wait} pending`});
        for (const [cls, count] of [['succeeded', ok], ['failed', bad], ['pending', wait]]) {
          const seg = el('span', {class: 'seg ' + cls});
          seg.style.width = (n > 0 ? Math.min(100, 100 * count / n) : 0) + '%';
          bar.append(seg);
        }
        list.append(el('div', {class: 'wave' + (num(r.wave) === i + 1 ? ' current' : ''),
                               'data-wave': i + 1, 'data-state': ws},
            el('span', {class: 'wave-label'},
                `wave ${i + 1} \u00b7 ${num(w.percent) ?? '?'}% \u00b7 ${plural(n, 'device')}`),
            bar,
            el('span', {class: 'wave-counts'},
                `${ok} ok \u00b7 ${bad} failed \u00b7 ${wait} pending \u00b7 ` +
                (WAVE_STATES.has(ws) ? ws : 'unknown'))));
      });
      card.append(list);
      const failures = Array.isArray(r.failures) ? r.failures : [];
      if (failures.length > 0) {
        card.append(el('ul', {class: 'failures'}, ...failures.map((f) =>
            el('li', {'data-device': str(f && f.device)},
                el('span', {class: 'failure-device'}, str(f && f.device)), ': ',
                str(f && f.reason)))));
      }
      return card;
    });
    byId('rollouts').replaceChildren(...cards);
    byId('rollouts-empty').hidden = cards.length > 0;
  }

  // ---- events ----

  function renderEvents(doc) {
    const events = Array.isArray(doc && doc.events) ? doc.events.slice(0, 30) : [];
    const rows = events.map((e) => {
      const name = str(e.event);
      return el('tr', {'data-event': name,
                       class: BAD_EVENTS.has(name) ? 'bad' : name === 'committed' ? 'good' : null},
          el('td', {class: 'time', title: iso(e.ts)}, clock(e.ts)),
          el('td', {class: 'device'}, str(e.device)),
          el('td', {class: 'event'}, name),
          el('td', {class: 'version'}, (str(e.model) + ' ' + str(e.version)).trim() || '-'),
          el('td', {class: 'reason'}, str(e.reason)));
    });
    byId('events').tBodies[0].replaceChildren(...rows);
    byId('events-empty').hidden = rows.length > 0;
  }

  // ---- polling ----

  async function getJson(path) {
    const response = await fetch(path, {cache: 'no-store'});
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  const views = [
    ['api/summary', (doc) => renderSummary(doc)],
    ['api/devices?limit=' + DEVICES_SHOWN, (doc, now) => renderDevices(doc, now)],
    ['api/series', (doc) => renderCharts(doc)],
    ['api/rollouts?limit=20', (doc, now) => renderRollouts(doc, now)],
    ['api/events?limit=30', (doc) => renderEvents(doc)],
  ];

  async function poll() {
    const results = await Promise.allSettled(views.map(([path]) => getJson(path)));
    const now = Date.now();
    const errors = [];
    results.forEach((result, i) => {
      if (result.status === 'rejected') {
        errors.push(String(result.reason && result.reason.message || result.reason));
        return;
      }
      try {
        views[i][1](result.value, now);
      } catch (e) {
        errors.push(views[i][0] + ': ' + e);
      }
    });
    const status = byId('api-status');
    status.className = errors.length ? 'error' : 'ok';
    status.textContent = errors.length ? 'API error: ' + errors[0]
                                       : 'updated ' + clock(now);
    if (errors.length) {
      byId('collector-status').className = 'disconnected';
    }
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    setTimeout(poll, POLL_MS);
  }

  document.addEventListener('DOMContentLoaded', poll);
})();
