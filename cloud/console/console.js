// The fleetd web console: polls the node's /console/api/* with the org's API
// token (kept in sessionStorage only), or on the operator listener with the
// browser's client certificate and no token (every org), and draws the fleet, one device's
// delivery (an inline SVG chart) and the node's actors. Every number shown
// carries its raw value in a data- attribute, for the headless browser test.
'use strict';
(function () {
  const tokenKey = 'fleetd_console_token';
  const st = { token: null, device: null, org: null, interval: 3000,
    polls: 0, timer: null };

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function duration(ms) {
    if (ms < 0) return '–';
    if (ms < 1000) return ms + ' ms';
    const s = ms / 1000;
    if (s < 120) return s.toFixed(1) + ' s';
    if (s < 7200) return (s / 60).toFixed(1) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }

  function micros(us) { return us < 1000 ? us + ' µs' : (us / 1000).toFixed(1) + ' ms'; }

  function bytes(n) {
    if (n < 0) return '–';
    return n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + ' MiB'
                        : (n / 1024).toFixed(1) + ' KiB';
  }

  // A cell showing `text` and carrying the raw `value`.
  function cell(field, value, text, cls) {
    const td = el('td', { 'data-field': field, 'data-value': String(value) },
                  text === undefined ? String(value) : text);
    if (cls) td.className = cls;
    return td;
  }

  function card(metric, value, label, cls, text) {
    const c = el('div', { class: 'card', 'data-metric': metric,
      'data-value': String(value) });
    const v = el('div', { class: 'value' }, text === undefined ? String(value) : text);
    if (cls) v.classList.add(cls);
    c.append(v, el('div', { class: 'label' }, label));
    return c;
  }

  function setStatus(text, error) {
    const s = document.getElementById('status');
    s.textContent = text;
    s.classList.toggle('error', !!error);
  }

  function readFragment() {
    const h = new URLSearchParams(location.hash.slice(1));
    if (h.get('token')) sessionStorage.setItem(tokenKey, h.get('token'));
    if (h.get('device')) st.device = h.get('device');
    if (h.get('org')) st.org = h.get('org');
    const iv = Number(h.get('interval'));
    if (iv >= 500 && iv <= 600000) st.interval = iv;
    // The token must not stay in the address bar or the history.
    if (h.get('token')) {
      h.delete('token');
      history.replaceState(null, '', location.pathname + (h.toString() ? '#' + h : ''));
    }
    st.token = sessionStorage.getItem(tokenKey);
  }

  class AuthError extends Error {}

  async function api(path) {
    // No token: the operator listener, where the certificate proves who asks.
    const headers = st.token ? { Authorization: 'Bearer ' + st.token } : {};
    const r = await fetch('/console/api/' + path, { cache: 'no-store', headers });
    if (r.status === 401) throw new AuthError((await r.text()).trim());
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status + ' ' + (await r.text()).trim());
    return r.json();
  }

  function renderOverview(o) {
    // No org: the operator's view of every org, each row naming its own.
    document.getElementById('org').textContent = o.org ? 'org ' + o.org
      : 'every org (operator certificate)';
    const sum = document.getElementById('summary');
    sum.replaceChildren(card('devices_total', o.devices_total, 'devices'),
      card('online', o.online, 'online', 'online'),
      card('offline', o.offline, 'offline', o.offline ? 'offline' : ''));
    for (const [tier, n] of Object.entries(o.tiers))
      sum.append(card('tier_' + tier, n, 'tier ' + tier));
    const body = document.querySelector('#devices tbody');
    body.replaceChildren();
    if (!st.device && o.devices.length) st.device = o.devices[0].device;
    const mine = (d) => d.device === st.device
      && (d.org === undefined || st.org === null || d.org === st.org);
    const first = o.devices.find(mine);
    if (first && first.org !== undefined) st.org = first.org;
    for (const d of o.devices) {
      const tr = el('tr', { 'data-device': d.device });
      const name = d.org === undefined ? d.device : d.org + '/' + d.device;
      if (d.org !== undefined) tr.setAttribute('data-org', d.org);
      if (mine(d)) tr.className = 'selected';
      tr.append(cell('device', d.device, name, 'text'),
        cell('tier', d.tier),
        cell('online', d.online, d.online ? 'online' : 'offline',
             d.online ? 'online' : 'offline'),
        cell('last_seen_ms', d.last_seen_ms, duration(d.last_seen_age_ms) + ' ago'),
        cell('sync_lag_ms', d.sync_lag_ms, duration(d.sync_lag_ms)),
        cell('streams', d.streams), cell('points_received', d.points_received),
        cell('batches_received', d.batches_received),
        cell('duplicates', d.duplicates), cell('gaps', d.gaps));
      tr.addEventListener('click', () => {
        st.device = d.device;
        st.org = d.org === undefined ? null : d.org;
        poll();
      });
      body.append(tr);
    }
  }

  function renderActors(s) {
    document.getElementById('node-id').textContent = s.node_id + ' (' + s.role + ', ' + s.version + ')';
    const p = s.process;
    document.getElementById('process').replaceChildren(
      card('uptime_ms', s.uptime_ms, 'uptime', '', duration(s.uptime_ms)),
      card('rss_bytes', p.rss_bytes, 'RSS', '', bytes(p.rss_bytes)),
      card('cpu_ms', p.cpu_ms, 'CPU', '', duration(p.cpu_ms)),
      card('threads', p.threads, 'threads'), card('fds', p.fds, 'fds'),
      card('sockets', p.sockets, 'sockets'));
    const body = document.querySelector('#actors tbody');
    body.replaceChildren();
    for (const a of s.actors) {
      const tr = el('tr', { 'data-actor': a.name });
      const bad = a.state.startsWith('unresponsive') || a.state.startsWith('unhealthy');
      // A part that is no actor (a stats reader) has no runtime figures.
      const m = (text) => a.measured ? text : '–';
      tr.append(cell('name', a.name, a.name, 'text'),
        cell('state', a.state, a.state, 'text' + (bad ? ' bad' : '')),
        cell('mailbox', a.mailbox, m(String(a.mailbox))),
        cell('handled', a.handled, m(String(a.handled))),
        cell('per_second', a.per_second, m(String(a.per_second))),
        cell('p50_us', a.p50_us, m(micros(a.p50_us))),
        cell('p99_us', a.p99_us, m(micros(a.p99_us))),
        cell('errors', a.errors, m(String(a.errors)), a.errors ? 'bad' : ''),
        cell('restarts', a.restarts, m(String(a.restarts))),
        cell('idle_ms', a.idle_ms, m(duration(a.idle_ms))));
      if (a.last_error) tr.title = a.last_error;
      body.append(tr);
    }
  }

  // Received per hour, one bar per stream, ratio line on top.
  function chart(rows) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    const w = 1000, h = 180, pad = 30;
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    svg.setAttribute('data-rows', String(rows.length));
    const hours = [...new Set(rows.map(r => r.hour_ms))].sort((a, b) => a - b);
    const streams = [...new Set(rows.map(r => r.stream))].sort();
    const max = Math.max(1, ...rows.map(r => r.received + r.missing + r.declared_drops));
    const colors = ['#2f6fde', '#1f8a4c', '#d68910', '#8e44ad'];
    const slot = Math.min(120, (w - 2 * pad) / Math.max(1, hours.length));
    const bw = Math.min(36, Math.max(2, slot / (streams.length + 1)));
    const text = (x, y, label, anchor) => {
      const t = document.createElementNS(ns, 'text');
      t.setAttribute('x', x); t.setAttribute('y', y);
      t.setAttribute('font-size', 11); t.setAttribute('fill', '#6b7385');
      if (anchor) t.setAttribute('text-anchor', anchor);
      t.textContent = label;
      svg.append(t);
    };
    // Axis: the top bar's count, and each hour (UTC) under its bars.
    const axis = document.createElementNS(ns, 'line');
    for (const [k, v] of Object.entries({ x1: pad, x2: w - pad, y1: h - pad,
      y2: h - pad, stroke: '#dde1e8' })) axis.setAttribute(k, v);
    svg.append(axis);
    text(pad - 4, pad + 4, String(max), 'end');
    hours.forEach((hr, i) => text(pad + i * slot, h - pad + 14,
      new Date(hr).toISOString().slice(11, 13) + ':00'));
    rows.forEach(r => {
      const x = pad + hours.indexOf(r.hour_ms) * slot + streams.indexOf(r.stream) * bw;
      const bh = (h - 2 * pad) * r.received / max;
      const rect = document.createElementNS(ns, 'rect');
      for (const [k, v] of Object.entries({ x, y: h - pad - bh, width: bw - 1,
        height: bh, fill: colors[streams.indexOf(r.stream) % colors.length],
        'data-stream': r.stream, 'data-hour': r.hour_ms, 'data-received': r.received }))
        rect.setAttribute(k, v);
      svg.append(rect);
    });
    streams.forEach((s, i) => {
      const t = document.createElementNS(ns, 'text');
      t.setAttribute('x', w - pad - (streams.length - i) * 110); t.setAttribute('y', 14);
      t.setAttribute('fill', colors[i % colors.length]);
      t.textContent = '■ ' + s;
      svg.append(t);
    });
    return svg;
  }

  function renderDelivery(d) {
    document.getElementById('delivery-device').textContent = !st.device
      ? '(select a device)' : (st.org ? st.org + '/' : '') + st.device;
    const note = document.getElementById('delivery-note');
    const sec = document.getElementById('delivery');
    sec.dataset.available = String(!!d.available);
    const body = document.querySelector('#delivery-rows tbody');
    body.replaceChildren();
    document.getElementById('delivery-chart').replaceChildren();
    if (!d.available) { note.textContent = d.reason; return; }
    note.textContent = 'ratio ' + (d.ratio * 100).toFixed(2) + ' % over ' + d.rows.length + ' stream-hours';
    note.dataset.ratio = String(d.ratio);
    document.getElementById('delivery-chart').append(d.rows.length ? chart(d.rows)
      : el('p', { class: 'muted' }, 'no records counted for this device in the last 24 hours'));
    for (const r of d.rows) {
      const tr = el('tr', { 'data-stream': r.stream, 'data-hour': String(r.hour_ms) });
      tr.append(cell('hour_ms', r.hour_ms, new Date(r.hour_ms).toISOString().slice(0, 13) + 'h', 'text'),
        cell('stream', r.stream, r.stream, 'text'), cell('received', r.received),
        cell('duplicates', r.duplicates), cell('missing', r.missing),
        cell('declared_drops', r.declared_drops),
        cell('collected', r.collected), cell('stored', r.stored),
        cell('ratio', r.ratio, (r.ratio * 100).toFixed(2) + ' %'));
      body.append(tr);
    }
  }

  async function poll() {
    try {
      const [o, s] = await Promise.all([api('overview'), api('actors')]);
      renderOverview(o);
      renderActors(s);
      const q = st.device ? 'delivery?device=' + encodeURIComponent(st.device) + '&hours=24'
        + (st.org ? '&org=' + encodeURIComponent(st.org) : '') : null;
      renderDelivery(q ? await api(q) : { available: false, reason: 'no device' });
      st.polls += 1;
      document.body.dataset.polls = String(st.polls);
      document.body.dataset.loaded = '1';
      setStatus('updated ' + new Date().toLocaleTimeString() + ' · every ' + st.interval / 1000 + ' s');
    } catch (e) {
      if (e instanceof AuthError) {
        const had = st.token;
        sessionStorage.removeItem(tokenKey);
        st.token = null;
        showLogin(had ? 'token refused: ' + e.message : 'an API token is needed');
        return;
      }
      setStatus(e.message, true);
    }
  }

  function showLogin(why) {
    if (st.timer) clearInterval(st.timer);
    st.timer = null;
    document.getElementById('main').hidden = true;
    document.getElementById('login').hidden = false;
    setStatus(why, true);
  }

  function start() {
    document.getElementById('login').hidden = true;
    document.getElementById('main').hidden = false;
    poll();
    st.timer = setInterval(poll, st.interval);
  }

  document.addEventListener('DOMContentLoaded', () => {
    readFragment();
    document.getElementById('login').addEventListener('submit', ev => {
      ev.preventDefault();
      st.token = document.getElementById('token').value.trim();
      sessionStorage.setItem(tokenKey, st.token);
      start();
    });
    // Without a token the first poll tells: the operator listener answers,
    // the ingest port's 401 brings the token form.
    start();
  });
})();
