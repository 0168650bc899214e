// Draws one dashboard on its 12-column grid and keeps every widget live over the WebSocket API.
// State for tests and debugging: window.rta.widgets[id] = {values: [...], last, points}.
(() => {
  'use strict';
  const id = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop());
  const params = new URLSearchParams(location.search);
  const query = params.toString() ? '?' + params.toString() : '';
  const grid = document.getElementById('grid');
  const status = document.getElementById('status');
  const MAX_POINTS = 240;
  const widgets = {};
  window.rta = { widgets };

  const setStatus = (state, text) => { status.dataset.state = state; status.textContent = text; };
  const api = (path, body) => fetch(path + query, body === undefined ? {} : {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const groupLabel = (group) => Object.entries(group || {}).map(([k, v]) => `${k}=${v ?? '—'}`).join(', ');
  const scalar = (value) => (value && typeof value === 'object')
    ? (value.p95 ?? value.p99 ?? value.p50 ?? Object.values(value)[0]) : value;
  const fmt = (v) => (v === null || v === undefined) ? '—'
    : Math.abs(v) >= 1000 ? v.toLocaleString(undefined, { maximumFractionDigits: 0 }) : (+v.toFixed(3)).toString();

  function colorFor(value, thresholds) {
    let color = '#3b82f6';
    for (const t of thresholds || []) if (value >= t.value) color = t.color; else break;
    return ({ green: '#22a559', yellow: '#e5b50b', red: '#dc3545' })[color] || color;
  }

  // ---- widget kinds ------------------------------------------------------------------------
  function chart(w) {
    const series = new Map();  // label -> Map(ts -> value)
    let plot = null;
    const draw = () => {
      const labels = [...series.keys()];
      const times = [...new Set(labels.flatMap(l => [...series.get(l).keys()]))].sort((a, b) => a - b).slice(-MAX_POINTS);
      const data = [times, ...labels.map(l => times.map(t => series.get(l).get(t) ?? null))];
      w.el.dataset.points = String(times.length);
      const box = w.body.getBoundingClientRect();
      const size = { width: Math.max(120, box.width), height: Math.max(60, box.height - 30) };
      if (!plot || plot.series.length !== labels.length + 1) {
        if (plot) plot.destroy();
        const palette = ['#3b82f6', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#14b8a6'];
        const paths = w.def.type === 'bar_chart' ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined;
        plot = new uPlot({
          ...size,
          legend: { show: labels.length > 1 },
          series: [{}, ...labels.map((label, i) => ({
            label, stroke: palette[i % palette.length], width: 2, paths,
            fill: w.def.type === 'line_chart' ? undefined : palette[i % palette.length] + '33',
          }))],
          axes: [{}, { size: 50 }],
        }, data, w.body);
      } else {
        plot.setData(data);
      }
    };
    return {
      add(label, ts, value) {
        if (!series.has(label)) series.set(label, new Map());
        const points = series.get(label);
        if (value && typeof value === 'object') {
          for (const [k, v] of Object.entries(value)) this.add(label ? `${label} ${k}` : k, ts, v);
          series.delete(label);
          return;
        }
        points.set(ts, value);
        if (points.size > MAX_POINTS) points.delete(points.keys().next().value);
      },
      draw,
    };
  }

  function gauge(w) {
    const cfg = w.def.visualization_config || {};
    const min = cfg.min ?? 0, max = cfg.max ?? 100;
    w.body.classList.add('gauge');
    w.body.innerHTML = `<svg viewBox="0 0 200 120"><path d="M20 100 A80 80 0 0 1 180 100" stroke="#e3e6ea" stroke-width="18" fill="none"/>
      <path class="arc" stroke-width="18" fill="none"/><text class="value" x="100" y="98" text-anchor="middle">—</text></svg>`;
    const arc = w.body.querySelector('.arc'), text = w.body.querySelector('.value');
    return {
      set(value) {
        const v = scalar(value);
        if (v === null || v === undefined) return;
        const f = Math.min(1, Math.max(0, (v - min) / (max - min || 1)));
        const angle = Math.PI * (1 - f);
        arc.setAttribute('d', `M20 100 A80 80 0 0 1 ${100 + 80 * Math.cos(angle)} ${100 - 80 * Math.sin(angle)}`);
        const color = colorFor(v, cfg.thresholds);
        arc.setAttribute('stroke', color);
        text.textContent = fmt(v);
        w.el.dataset.color = color;
      },
    };
  }

  function stat(w) {
    const box = document.createElement('div');
    box.className = 'stat';
    w.body.append(box);
    return { set(value) { const v = scalar(value); box.textContent = fmt(v); box.style.color = colorFor(v, (w.def.visualization_config || {}).thresholds); } };
  }

  function table(w) {
    const rows = new Map();
    const el = document.createElement('table');
    w.body.append(el);
    return {
      set(value, group, metric) {
        rows.set(metric + ' ' + groupLabel(group), [metric, groupLabel(group), value]);
        el.innerHTML = '<tr><th>metric</th><th>group</th><th>value</th></tr>' + [...rows.values()].map(
          ([m, g, v]) => `<tr><td>${m}</td><td>${g}</td><td>${typeof v === 'object' && v ? Object.entries(v).map(([k, x]) => `${k} ${fmt(x)}`).join(' · ') : fmt(v)}</td></tr>`).join('');
      },
    };
  }

  function heatmap(w) {
    const cells = new Map();  // group -> [values over time]
    const el = document.createElement('div');
    el.className = 'heatmap';
    w.body.append(el);
    return {
      set(value, group) {
        const key = groupLabel(group) || 'all';
        const list = cells.get(key) || [];
        list.push(scalar(value));
        if (list.length > 30) list.shift();
        cells.set(key, list);
        const all = [...cells.values()].flat().filter(v => v !== null && v !== undefined);
        const hi = Math.max(...all, 1e-9), lo = Math.min(...all, 0);
        el.style.gridTemplateColumns = 'repeat(30, 1fr)';
        el.innerHTML = [...cells.entries()].map(([k, vs]) => vs.concat(Array(30 - vs.length).fill(null)).map(v =>
          `<div title="${k}: ${fmt(v)}" style="background:${v === null || v === undefined ? '#f0f1f3' : `rgba(220,53,69,${0.15 + 0.85 * (v - lo) / (hi - lo || 1)})`}"></div>`).join('')).join('');
      },
    };
  }

  // ---- rendering and data ------------------------------------------------------------------
  function render(dashboard) {
    document.title = dashboard.name + ' · rtanalytics';
    document.getElementById('title').textContent = dashboard.name;
    document.getElementById('description').textContent = dashboard.description || '';
    grid.textContent = '';
    for (const def of dashboard.widgets || []) {
      const el = document.createElement('section');
      el.className = 'widget ' + def.type;
      el.dataset.widgetId = def.id;
      el.dataset.state = 'empty';
      el.style.gridColumn = `${def.position.x + 1} / span ${def.position.width}`;
      el.style.gridRow = `${def.position.y + 1} / span ${def.position.height}`;
      el.innerHTML = `<h2></h2><div class="body"><div class="empty">No data yet</div></div>`;
      el.querySelector('h2').textContent = def.title || def.id;
      grid.append(el);
      const w = { def, el, body: el.querySelector('.body'), values: [], last: null, points: 0 };
      w.view = ['line_chart', 'area_chart', 'bar_chart'].includes(def.type) ? chart(w)
        : def.type === 'gauge' ? gauge(w) : def.type === 'stat' ? stat(w)
          : def.type === 'table' ? table(w) : heatmap(w);
      widgets[def.id] = w;
    }
  }

  function show(w, data) {
    if (data.value === null || data.value === undefined) return;
    w.last = data.value;
    w.values.push(data);
    if (w.values.length > MAX_POINTS) w.values.shift();
    w.el.dataset.state = 'live';
    w.el.dataset.lastValue = JSON.stringify(data.value);
    const label = [data.metric, groupLabel(data.group)].filter(Boolean).join(' ');
    if (w.view.add) { w.view.add(label, Date.parse(data.timestamp) / 1000, data.value); w.view.draw(); }
    else w.view.set(data.value, data.group, data.metric);
  }

  async function history(w) {
    // Charts start with the last 30 windows of history, then grow live.
    if (!w.view.add) return;
    const q = w.def.metric_query;
    const windowS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
    const m = /^(\d+)(ms|s|m|h|d)$/.exec(q.window || '1m');
    const span = m ? +m[1] * windowS[m[2]] : 60;
    const now = Date.now() / 1000;
    const res = await api('/api/v1/query', { ...q, start_time: now - 30 * span, end_time: now + span });
    if (!res.ok) return;
    for (const row of (await res.json()).results) {
      for (const p of row.points || []) show(w, { ...row, value: p.value, timestamp: p.timestamp });
    }
  }

  function connect(dashboard, delay = 500) {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/ws/metrics/dashboard-${id}-${Math.random().toString(36).slice(2, 8)}${query}`);
    const interval = Math.max(100, Math.min(1000, (dashboard.refresh_interval || 5) * 1000));
    ws.onopen = () => {
      setStatus('live', 'live');
      delay = 500;
      for (const def of dashboard.widgets || []) {
        ws.send(JSON.stringify({ type: 'subscribe', id: def.id, ...def.metric_query, interval_ms: interval }));
      }
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === 'metric_data' && widgets[message.id]) show(widgets[message.id], message.data);
    };
    ws.onclose = () => {
      setStatus('reconnecting', 'connection lost — reconnecting…');
      setTimeout(async () => {
        const res = await api(`/api/v1/dashboards/${id}`);
        if (res.status === 404) return gone();
        connect(dashboard, Math.min(delay * 2, 10000));
      }, delay);
    };
  }

  function gone() {
    setStatus('deleted', 'deleted');
    grid.textContent = '';
    document.getElementById('gone').hidden = false;
    document.getElementById('title').textContent = 'Dashboard not found';
  }

  async function main() {
    const res = await api(`/api/v1/dashboards/${id}`);
    if (!res.ok) return gone();
    const dashboard = await res.json();
    render(dashboard);
    await Promise.all(Object.values(widgets).map(history));
    connect(dashboard);
    // A deleted dashboard shows it even while the socket stays up.
    setInterval(async () => { const r = await api(`/api/v1/dashboards/${id}`); if (r.status === 404) gone(); }, 15000);
  }

  main();
})();
