/* nodetel's pages. Every figure comes from the agent's own JSON API (cAdvisor's, plus the
 * run-queue histogram and TCP health under ?nodetel=true) and its event store: the page is a
 * reader of what any API client sees. Charts are uPlot's. Memory stays bounded however long a
 * page is open: each series keeps POINTS points, tables are redrawn in place, and one request of
 * each kind is in flight at a time. */
(() => {
  'use strict';

  const ROOT = new URL(document.baseURI).pathname;
  // Requests resolve against the base without any user:password@ the page was opened with
  // (fetch refuses such URLs); the browser sends the credentials it has for the origin.
  const API_BASE = new URL(document.baseURI);
  API_BASE.username = '';
  API_BASE.password = '';
  const ROUTE = decodeURIComponent(
    location.pathname.startsWith(ROOT) ? location.pathname.slice(ROOT.length) : '');
  const INTERVAL = Math.max(250, Number(document.body.dataset.intervalMs) || 1000);
  const POINTS = 120;
  const REQUEST_TIMEOUT = 10000;
  // Tables (every container's last two samples, every process) are refreshed at most this
  // often: on a 300-cgroup node one refresh is 600 samples of JSON.
  const TABLE_EVERY = Math.max(INTERVAL, 5000);
  const main = document.getElementById('main');
  // A fragment resolves against <base href> (the UI's root), not this page: the skip link
  // names this page's own path, or it would leave the page.
  const skip = document.querySelector('a.skip');
  if (skip) skip.href = location.pathname + location.search + '#main';
  const statusEl = document.getElementById('status');

  /* ---------- formatting ---------- */
  const dash = '–';
  const ok = v => v != null && Number.isFinite(v);
  function fmtBytes(v) {
    if (!ok(v)) return dash;
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let x = Math.abs(v), i = 0;
    while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
    return (v < 0 ? '-' : '') + x.toFixed(i === 0 ? 0 : x < 10 ? 2 : 1) + ' ' + u[i];
  }
  const fmtRate = v => ok(v) ? fmtBytes(v) + '/s' : dash;
  const fmtCores = v => !ok(v) ? dash : v === 0 ? '0 cores' : v.toFixed(v < 0.1 ? 3 : 2) + ' cores';
  const fmtPerSec = v => ok(v) ? (v < 10 ? v.toFixed(2) : v.toFixed(0)) + '/s' : dash;
  const fmtPct = v => ok(v) ? v.toFixed(1) + ' %' : dash;
  function fmtSecs(s) {
    if (!ok(s)) return dash;
    if (s < 1e-3) return (s * 1e6).toFixed(0) + ' µs';
    if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + ' ms';
    return s.toFixed(2) + ' s';
  }
  const fmtTime = t => new Date(t).toLocaleTimeString();
  // cAdvisor writes "no limit" as the largest page-aligned int64.
  const limited = v => ok(v) && v > 0 && v < 2 ** 62;

  /* ---------- DOM ---------- */
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat(Infinity)) {
      if (k == null || k === false) continue;
      e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }
  const encPath = p => p.split('/').map(encodeURIComponent).join('/');
  const link = (href, text) => h('a', { href }, text);
  const containerHref = path => 'containers' + encPath(path === '/' ? '/' : path);
  function facts(pairs) {
    return h('dl', { class: 'facts' },
      pairs.filter(([, v]) => v != null && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  /* ---------- status line: never a spinner that does not end ---------- */
  let lastOk = null;
  function setStatus(err) {
    if (!err) {
      statusEl.textContent = '';
      statusEl.className = '';
      return;
    }
    const since = lastOk ? ` Figures shown are from ${fmtTime(lastOk)}.` : '';
    statusEl.className = 'error';
    statusEl.textContent = err.unreachable
      ? `The agent did not answer (${err.message}). Retrying every ${INTERVAL / 1000} s.${since}`
      : `The agent answered with an error: ${err.message}.${since}`;
  }

  // A page left for another may be kept whole in the back/forward cache with its event stream
  // still open: each such page held one of the browser's six connections to the agent, and after
  // a few pages every request of the new one waited for a free connection (found by the browser
  // test: 11.4 s for one fetch). Leaving closes the stream and ends the polls; coming back from
  // that cache reloads the page.
  const leaving = new AbortController();
  window.addEventListener('pagehide', () => leaving.abort());
  window.addEventListener('pageshow', e => { if (e.persisted) location.reload(); });

  async function api(url, body) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT);
    const onLeave = () => ctl.abort();
    leaving.signal.addEventListener('abort', onLeave, { once: true });
    const opts = { cache: 'no-store', signal: ctl.signal };
    if (body) {
      opts.method = 'POST';
      opts.headers = { 'Content-Type': 'application/json' };
      opts.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(new URL(url, API_BASE), opts);
    } catch (e) {
      const err = new Error(e.name === 'AbortError' ? `no answer in ${REQUEST_TIMEOUT / 1000} s` : e.message);
      err.unreachable = true;
      throw err;
    } finally {
      clearTimeout(timer);
      leaving.signal.removeEventListener('abort', onLeave);
    }
    if (!r.ok) {
      const text = (await r.text()).trim();
      const err = new Error(`${r.status} ${text}`);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }

  /** Runs `step` now and then every `every` ms, one at a time; failures show in the status line. */
  function poll(step, every = INTERVAL) {
    const run = async () => {
      try {
        await step();
        lastOk = Date.now();
        setStatus(null);
      } catch (e) {
        setStatus(e);
        if (!leaving.signal.aborted) console.warn('nodetel:', e.message);
      }
      if (!leaving.signal.aborted) setTimeout(run, every);
    };
    return run();
  }

  /** Follows an event stream (`stream=true`: one JSON object per line), reconnecting after
   *  two intervals whenever it ends; a partial line is bounded at 1 MiB. */
  async function follow(url, onEvent) {
    while (!leaving.signal.aborted) {
      try {
        const r = await fetch(new URL(url, API_BASE), { cache: 'no-store', signal: leaving.signal });
        if (!r.ok) throw new Error(`${r.status}`);
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (line) onEvent(JSON.parse(line));
          }
          if (buf.length > 1 << 20) buf = '';
        }
      } catch (e) {
        // The agent gone or restarting: the poll's status line says so; try again.
      }
      await new Promise(r => setTimeout(r, INTERVAL * 2));
    }
  }

  /* ---------- theme ---------- */
  const themeBtn = document.getElementById('theme');
  function applyTheme(t) {
    document.documentElement.dataset.theme = t;
    themeBtn.setAttribute('aria-pressed', String(t === 'dark'));
    themeBtn.textContent = t === 'dark' ? 'Light theme' : 'Dark theme';
  }
  let savedTheme = null;
  try { savedTheme = localStorage.getItem('nodetel-theme'); } catch (e) { /* private mode */ }
  applyTheme(savedTheme || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'));
  themeBtn.addEventListener('click', () => {
    const t = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
    applyTheme(t);
    try { localStorage.setItem('nodetel-theme', t); } catch (e) { /* private mode */ }
    for (const c of charts.values()) c.rebuild();
  });
  const cssColor = i => getComputedStyle(document.documentElement).getPropertyValue(`--c${(i % 6) + 1}`).trim();

  /* ---------- charts ---------- */
  const charts = new Map();
  // For the browser test and for an operator's devtools: what each chart holds.
  window.nodetel = { charts, points: POINTS };

  /** A time chart: `labels` its series; push(t, values) appends one point to each. */
  function chart(parent, title, labels, fmt, opts = {}) {
    const fig = h('figure', {}, h('figcaption', {}, title));
    const holder = h('div', { role: 'img', 'aria-label': `${title} chart` });
    fig.append(holder);
    if (opts.note) fig.append(h('p', { class: 'note' }, opts.note));
    parent.append(fig);
    const c = {
      title, labels, data: [[], ...labels.map(() => [])], u: null,
      rebuild() {
        if (c.u) c.u.destroy();
        holder.textContent = '';
        const fg = getComputedStyle(document.body).color;
        const grid = getComputedStyle(document.documentElement).getPropertyValue('--line').trim();
        const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
        c.u = new uPlot({
          width: Math.max(300, holder.clientWidth || 400),
          height: 200,
          series: [{}, ...labels.map((label, i) => {
            const s = { label, stroke: cssColor(i), width: 1.5, value: (u, v) => fmt(v) };
            if (opts.points) {
              s.points = { show: true, size: 8, fill: cssColor(i) };
              s.paths = () => null;
            }
            return s;
          })],
          axes: [axis, { ...axis, size: 90, values: (u, vals) => vals.map(fmt) }],
          scales: { y: { range: (u, lo, hi) => [Math.min(0, lo), Math.max(hi, opts.min || 0) * 1.05 || 1] } },
          cursor: { drag: { x: false, y: false } },
        }, c.data, holder);
      },
      push(t, values) {
        c.data[0].push(t / 1000);
        values.forEach((v, i) => c.data[i + 1].push(ok(v) ? v : null));
        for (const s of c.data) if (s.length > POINTS) s.splice(0, s.length - POINTS);
        c.u.setData(c.data);
      },
      last(i = 0) { return c.data[i + 1][c.data[i + 1].length - 1]; },
    };
    c.rebuild();
    new ResizeObserver(() => {
      const w = Math.max(300, holder.clientWidth);
      if (c.u && Math.abs(c.u.width - w) > 4) c.u.setSize({ width: w, height: 200 });
    }).observe(holder);
    charts.set(title, c);
    return c;
  }

  /* ---------- a sortable, filterable container table ---------- */
  function table(parent, caption, columns, opts = {}) {
    const state = { key: opts.sort || columns[1].key, desc: true, filter: '', rows: [] };
    const input = h('input', { type: 'search', placeholder: 'name, image, pod, label…', 'aria-label': `Filter ${caption}` });
    const tbody = h('tbody');
    const heads = columns.map(col => {
      const th = h('th', { scope: 'col', class: col.num ? 'num' : null },
        col.sortable === false ? col.title : h('button', { type: 'button', onclick: () => {
          state.desc = state.key === col.key ? !state.desc : !!col.num;
          state.key = col.key;
          draw();
        } }, col.title));
      return th;
    });
    const count = h('span', { class: 'note' });
    input.addEventListener('input', () => { state.filter = input.value.toLowerCase(); draw(); });
    parent.append(
      h('div', { class: 'filter' }, h('label', {}, 'Filter ', input), ' ', count),
      h('table', {}, h('caption', { class: 'note' }, caption), h('thead', {}, h('tr', {}, heads)), tbody));
    function draw() {
      heads.forEach((th, i) => th.setAttribute('aria-sort',
        columns[i].key === state.key ? (state.desc ? 'descending' : 'ascending') : 'none'));
      const rows = state.rows.filter(r => !state.filter || (r.search || '').toLowerCase().includes(state.filter));
      const k = state.key;
      rows.sort((a, b) => {
        const x = a[k], y = b[k];
        const c = typeof x === 'number' || typeof y === 'number'
          ? (ok(x) ? x : -Infinity) - (ok(y) ? y : -Infinity)
          : String(x ?? '').localeCompare(String(y ?? ''));
        return state.desc ? -c : c;
      });
      const shown = rows.slice(0, opts.max || 500);
      tbody.replaceChildren(...shown.map(r => h('tr', {}, columns.map(col =>
        h('td', { class: col.num ? 'num' : null }, col.cell ? col.cell(r) : col.fmt ? col.fmt(r[col.key]) : r[col.key])))));
      count.textContent = `${shown.length} of ${state.rows.length}` + (rows.length > shown.length ? ` (first ${shown.length})` : '');
    }
    return { set(rows) { state.rows = rows; draw(); } };
  }

  /* ---------- what a container is called ---------- */
  function describe(path, spec) {
    const l = (spec && spec.labels) || {};
    const alias = spec && spec.aliases && spec.aliases.find(a => !/^[0-9a-f]{64}$/.test(a));
    const pod = l['io.kubernetes.pod.name'], ns = l['io.kubernetes.pod.namespace'];
    const kc = l['io.kubernetes.container.name'];
    const name = kc && pod ? `${ns}/${pod}/${kc}` : alias || path;
    return {
      path, name, pod, ns, uid: l['io.kubernetes.pod.uid'], image: spec && spec.image,
      runtime: spec && spec.namespace, id: spec && spec.aliases && spec.aliases[spec.aliases.length - 1],
      service: l['com.docker.swarm.service.name'], stack: l['com.docker.stack.namespace'],
      search: [path, name, spec && spec.image, pod, ns, ...Object.entries(l).map(([k, v]) => `${k}=${v}`)].join(' '),
    };
  }

  /** Specs of every container under `path`: asked again after 30 s, or at once when a
   *  container without one appears (so a new container is named in the next table). */
  let specCache = { path: null, at: 0, specs: {} };
  async function specsOf(path, paths) {
    const c = specCache;
    if (c.path === path && Date.now() - c.at < 30000 && paths.every(p => p in c.specs)) return c.specs;
    const specs = await api(`api/v2.0/spec${encPath(path)}?recursive=true`);
    specCache = { path, at: Date.now(), specs };
    return specs;
  }

  /** CPU cores and memory of every container under `path`, from the last two samples. */
  async function usage(path) {
    const stats = await api(`api/v2.0/stats${encPath(path)}?recursive=true&count=2`);
    const specs = await specsOf(path, Object.keys(stats));
    const rows = [];
    for (const [p, s] of Object.entries(stats)) {
      const spec = specs[p] || {};
      const a = s[s.length - 2], b = s[s.length - 1];
      let cpu = null;
      if (a && b && a.cpu && b.cpu) {
        const dt = (Date.parse(b.timestamp) - Date.parse(a.timestamp)) / 1000;
        if (dt > 0) cpu = (b.cpu.usage.total - a.cpu.usage.total) / 1e9 / dt;
      }
      const m = b && b.memory;
      rows.push({ ...describe(p, spec), cpu, mem: m ? m.working_set : null,
        limit: limited(spec.memory && spec.memory.limit) ? spec.memory.limit : null });
    }
    return rows;
  }

  const CONTAINER_COLUMNS = [
    { key: 'name', title: 'Container', cell: r => link(containerHref(r.path), r.name) },
    { key: 'cpu', title: 'CPU', num: true, fmt: fmtCores },
    { key: 'mem', title: 'Memory (working set)', num: true, fmt: fmtBytes },
    { key: 'limit', title: 'Memory limit', num: true, fmt: v => ok(v) ? fmtBytes(v) : 'none' },
    { key: 'image', title: 'Image' },
  ];

  /* ---------- the container page (also the machine's and a pod's) ---------- */
  async function containerPage(name, what) {
    const info = await api(`api/v1.3/containers${encPath(name)}?nodetel=true`, { num_stats: POINTS });
    const spec = info.spec || {};
    const d = describe(name, { ...spec, aliases: info.aliases });
    const l = spec.labels || {};
    const isRoot = name === '/';
    if (isRoot && !what.title) what = { ...what, title: 'Machine' };
    document.title = `${what.title || d.name} · nodetel`;
    main.replaceChildren(h('h1', {}, what.kind ? `${what.kind}: ` : '', what.title || d.name));

    const cpuLimit = spec.cpu && spec.cpu.quota > 0 && spec.cpu.period > 0
      ? `${(spec.cpu.quota / spec.cpu.period).toFixed(2)} cores (quota ${spec.cpu.quota} µs per ${spec.cpu.period} µs)` : 'none';
    const pids = spec.processes && spec.processes.limit;
    if (isRoot) {
      const [machine, attrs] = await Promise.all([api('api/v1.3/machine'), api('api/v2.0/attributes')]);
      main.append(h('section', { 'aria-labelledby': 'm' }, h('h2', { id: 'm' }, 'Machine'), facts([
        ['Cores', `${machine.num_cores} (${machine.num_physical_cores || '?'} physical, ${machine.num_sockets || '?'} sockets)`],
        ['CPU frequency', machine.cpu_frequency_khz ? `${(machine.cpu_frequency_khz / 1e6).toFixed(2)} GHz` : null],
        ['Memory', fmtBytes(machine.memory_capacity)],
        ['Kernel', attrs.kernel_version], ['OS', attrs.container_os_version],
        ['Docker', attrs.docker_version || null], ['Machine id', machine.machine_id],
        ['Boot id', machine.boot_id],
      ])));
    } else {
      main.append(h('section', { 'aria-labelledby': 'about' }, h('h2', { id: 'about' }, 'About'), facts([
        ['cgroup', name], ['Names', what.kind === 'Pod' ? null : (info.aliases || []).join(', ') || null],
        ['Image', spec.image], ['Runtime', info.namespace],
        ['Pod', d.pod ? link(`pods/${encodeURIComponent(d.ns)}/${encodeURIComponent(d.pod)}`, `${d.ns}/${d.pod}`) : null],
        ['Swarm service', d.service ? link(`swarm/services/${encodeURIComponent(d.service)}`, d.service) : null],
        ['Started', spec.creation_time ? new Date(spec.creation_time).toLocaleString() : null],
        ['CPU limit', cpuLimit], ['CPU shares', spec.cpu ? String(spec.cpu.limit) : null],
        ['CPU set', spec.cpu && spec.cpu.mask],
        ['Memory limit', limited(spec.memory && spec.memory.limit) ? fmtBytes(spec.memory.limit) : 'none'],
        ['Pids limit', ok(pids) && pids > 0 ? String(pids) : 'none'],
        ['Labels', Object.keys(l).length ? h('div', { class: 'tags' },
          Object.entries(l).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`))) : null],
      ])));
    }

    // The machine page leads with what an operator looks for first: the busiest containers.
    const subSec = h('section', { 'aria-labelledby': 'subs' }, h('h2', { id: 'subs' }, isRoot ? 'Top containers' : 'Subcontainers'));
    const subTable = table(subSec, isRoot ? 'Every cgroup on the node' : 'cgroups below this one', CONTAINER_COLUMNS, { sort: 'cpu' });
    const leadWithTable = isRoot || what.kind === 'Pod';
    if (leadWithTable) main.append(subSec);

    const sec = (id, title) => {
      const s = h('section', { 'aria-labelledby': id }, h('h2', { id }, title));
      const g = h('div', { class: 'grid' });
      s.append(g);
      main.append(s);
      return g;
    };
    const cpuG = sec('cpu', 'CPU');
    const memLimit = limited(spec.memory && spec.memory.limit) ? spec.memory.limit : null;
    const cCpu = chart(cpuG, 'CPU usage', ['total', 'user', 'system'], fmtCores, { min: 0.01 });
    const cThr = chart(cpuG, 'CPU throttling', ['throttled periods %'], fmtPct,
      { note: cpuLimit === 'none' && !isRoot ? 'No CPU quota: never throttled.' : null });
    const cRq = chart(cpuG, 'Run-queue latency (percentiles)', ['p50', 'p90', 'p99'], fmtSecs,
      { note: 'Time runnable tasks of this cgroup waited for a CPU, per interval, from the kernel\'s log2 histogram (bucket upper bounds).' });
    const rqHist = h('figure', {}, h('figcaption', {}, 'Run-queue latency histogram (last 2 minutes)'), h('p', { class: 'note' }, 'Waiting for data…'));
    cpuG.append(rqHist);
    const memG = sec('memory', 'Memory');
    const cMem = chart(memG, 'Memory', memLimit ? ['usage', 'working set', 'limit'] : ['usage', 'working set'], fmtBytes);
    const cMem2 = chart(memG, 'Memory: cache and RSS', ['cache', 'rss'], fmtBytes);
    const netG = sec('network', 'Network');
    netG.append(h('p', { class: 'note' }, 'No traffic of this cgroup seen yet (or the network kind is off).'));
    const tcpG = sec('tcp', 'TCP');
    const tcpNote = h('p', { class: 'note' }, 'TCP health is not measured: the tcp_health kind is off by default (--disable-metrics=process,sched,pressure,blkio turns it on with the other defaults).');
    tcpG.append(tcpNote);
    const ioG = sec('blkio', 'Block I/O');
    ioG.append(h('p', { class: 'note' }, 'No block I/O of this cgroup seen yet (or the diskIO kind is off).'));
    const oomS = sec('oom', 'OOM kills');
    const cOom = chart(oomS, 'OOM kills', ['kills'], v => ok(v) ? String(v) : dash, { points: true, min: 1 });
    const oomList = h('ol', { class: 'timeline', 'aria-label': 'OOM kills, newest first' });
    oomS.append(h('figure', {}, h('figcaption', {}, 'Victims'), oomList));

    // Per-interface and per-device charts appear with their first sample.
    const perKey = new Map();
    const keyed = (parent, key, title, labels, fmt) => {
      if (!perKey.has(key)) {
        const note = parent.querySelector(':scope > p.note');
        if (note) note.remove();
        perKey.set(key, chart(parent, title, labels, fmt));
      }
      return perKey.get(key);
    };

    let prev = null;
    const pushStats = s => {
      const t = Date.parse(s.timestamp);
      if (prev && t <= Date.parse(prev.timestamp)) return;
      if (prev) {
        const dt = (t - Date.parse(prev.timestamp)) / 1000;
        const rate = (b, a) => ok(b) && ok(a) && b >= a ? (b - a) / dt : null;
        const u = s.cpu.usage, pu = prev.cpu.usage;
        cCpu.push(t, [rate(u.total, pu.total) / 1e9, rate(u.user, pu.user) / 1e9, rate(u.system, pu.system) / 1e9]);
        const per = s.cpu.cfs.periods - prev.cpu.cfs.periods;
        cThr.push(t, [per > 0 ? 100 * (s.cpu.cfs.throttled_periods - prev.cpu.cfs.throttled_periods) / per : 0]);
        const ifaces = new Map(((prev.network || {}).interfaces || []).map(i => [i.name, i]));
        for (const i of (s.network || {}).interfaces || []) {
          const p = ifaces.get(i.name);
          if (!p) continue;
          keyed(netG, `b${i.name}`, `${i.name}: bytes`, ['received', 'sent'], fmtRate)
            .push(t, [rate(i.rx_bytes, p.rx_bytes), rate(i.tx_bytes, p.tx_bytes)]);
          keyed(netG, `p${i.name}`, `${i.name}: packets`, ['received', 'sent'], fmtPerSec)
            .push(t, [rate(i.rx_packets, p.rx_packets), rate(i.tx_packets, p.tx_packets)]);
          keyed(netG, `e${i.name}`, `${i.name}: errors and drops`, ['rx errors', 'tx errors', 'rx dropped', 'tx dropped'], fmtPerSec)
            .push(t, [rate(i.rx_errors, p.rx_errors), rate(i.tx_errors, p.tx_errors), rate(i.rx_dropped, p.rx_dropped), rate(i.tx_dropped, p.tx_dropped)]);
        }
        const devs = new Map(((prev.diskio || {}).io_service_bytes || []).map(e => [`${e.major}:${e.minor}`, e]));
        const ops = new Map(((prev.diskio || {}).io_serviced || []).map(e => [`${e.major}:${e.minor}`, e]));
        for (const e of (s.diskio || {}).io_service_bytes || []) {
          const k = `${e.major}:${e.minor}`, p = devs.get(k);
          if (!p) continue;
          const dev = e.device || k;
          keyed(ioG, `io${k}`, `${dev}: bytes`, ['read', 'written'], fmtRate)
            .push(t, [rate(e.stats.Read, p.stats.Read), rate(e.stats.Write, p.stats.Write)]);
        }
        for (const e of (s.diskio || {}).io_serviced || []) {
          const k = `${e.major}:${e.minor}`, p = ops.get(k);
          if (!p) continue;
          keyed(ioG, `ops${k}`, `${e.device || k}: operations`, ['reads', 'writes'], fmtPerSec)
            .push(t, [rate(e.stats.Read, p.stats.Read), rate(e.stats.Write, p.stats.Write)]);
        }
      }
      const m = s.memory;
      cMem.push(t, memLimit ? [m.usage, m.working_set, memLimit] : [m.usage, m.working_set]);
      cMem2.push(t, [m.cache, m.rss]);
      prev = s;
    };
    for (const s of info.stats || []) pushStats(s);

    const stampOf = i => {
      const s = i.stats || [];
      return s.length ? Date.parse(s[s.length - 1].timestamp) : null;
    };
    // Run-queue: differences of the cumulative histogram between two answers.
    let rqPrev = null;
    const rqWindow = [];
    const pushRunqueue = (t, h2) => {
      if (!h2) return;
      if (rqPrev && h2.buckets.length === rqPrev.buckets.length) {
        const delta = h2.buckets.map((b, i) => Math.max(0, b.count - rqPrev.buckets[i].count));
        rqWindow.push(delta);
        if (rqWindow.length > POINTS) rqWindow.shift();
        const q = p => {
          const n = delta.reduce((a, b) => a + b, 0);
          if (!n) return null;
          let seen = 0;
          for (let i = 0; i < delta.length; i++) {
            seen += delta[i];
            if (seen >= p * n) return h2.buckets[i].le_seconds ?? h2.buckets[i - 1].le_seconds * 2;
          }
          return null;
        };
        cRq.push(t, [q(0.5), q(0.9), q(0.99)]);
        const sum = delta.map((_, i) => rqWindow.reduce((a, w) => a + w[i], 0));
        const max = Math.max(1, ...sum);
        const rows = sum.map((n, i) => [n, i]).filter(([n]) => n > 0);
        rqHist.replaceChildren(h('figcaption', {}, 'Run-queue latency histogram (last 2 minutes)'),
          rows.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'wait up to'), h('th', { scope: 'col', class: 'num' }, 'waits'), h('th', { scope: 'col' }, ''))),
            h('tbody', {}, rows.map(([n, i]) => h('tr', {},
              h('td', {}, h2.buckets[i].le_seconds == null ? 'more' : fmtSecs(h2.buckets[i].le_seconds)),
              h('td', { class: 'num' }, String(n)),
              h('td', {}, h('div', { class: 'bar' }, h('span', { style: `width:${(100 * n / max).toFixed(1)}%` })))))))
            : h('p', { class: 'note' }, 'No waits in the window.'));
      }
      rqPrev = h2;
    };
    const rqOf = i => i.nodetel && i.nodetel.runqueue_latency;
    pushRunqueue(Date.now(), rqOf(info));
    if (!rqOf(info)) rqHist.replaceChildren(h('figcaption', {}, 'Run-queue latency histogram'),
      h('p', { class: 'note' }, 'No run-queue waits recorded for this cgroup\'s own tasks (a pod or slice cgroup has none of its own), or the sched kind is off.'));

    // TCP health (nodetel's tcp_health kind): rates from the cumulative counters of two answers,
    // and the established connections as they are.
    let tcpPrev = null, tcpCharts = null;
    const tcpOf = i => i.nodetel && i.nodetel.tcp;
    // The figures are the newest pass's: timed by its sample, not by when the page asked (two
    // answers can fall within one pass, or one answer be late).
    const pushTcp = (t, x) => {
      if (!x || t == null || (tcpPrev && t <= tcpPrev.t)) return;
      if (!tcpCharts) {
        tcpNote.remove();
        tcpCharts = {
          est: x.established == null ? null : chart(tcpG, 'TCP established connections', ['established'], v => ok(v) ? String(v) : dash),
          conn: chart(tcpG, 'TCP connects and accepts', ['ok', 'refused', 'timed out', 'other', 'accepted'], fmtPerSec),
          err: chart(tcpG, 'TCP retransmits and resets', ['retransmitted segments', 'resets sent', 'resets received'], fmtPerSec),
        };
      }
      if (tcpCharts.est) tcpCharts.est.push(t, [x.established]);
      if (tcpPrev) {
        const dt = (t - tcpPrev.t) / 1000, p = tcpPrev.x;
        const rate = (b, a) => dt > 0 && ok(b) && ok(a) && b >= a ? (b - a) / dt : null;
        tcpCharts.conn.push(t, [rate(x.connects.ok, p.connects.ok), rate(x.connects.refused, p.connects.refused),
          rate(x.connects.timeout, p.connects.timeout), rate(x.connects.other, p.connects.other), rate(x.accepts, p.accepts)]);
        tcpCharts.err.push(t, [rate(x.retransmits, p.retransmits), rate(x.resets_sent, p.resets_sent), rate(x.resets_received, p.resets_received)]);
      }
      tcpPrev = { t, x };
    };
    pushTcp(stampOf(info), tcpOf(info));

    // Processes (cAdvisor's /api/v2.0/ps).
    const psSec = h('section', { 'aria-labelledby': 'ps' }, h('h2', { id: 'ps' }, 'Processes'));
    main.append(psSec);
    const psTable = table(psSec, 'Processes of this cgroup (cAdvisor\'s /api/v2.0/ps)', [
      { key: 'cmd', title: 'Command' }, { key: 'pid', title: 'PID', num: true },
      { key: 'user', title: 'User' }, { key: 'percent_cpu', title: 'CPU % (lifetime)', num: true, fmt: fmtPct },
      { key: 'rss', title: 'RSS', num: true, fmt: fmtBytes }, { key: 'status', title: 'State' },
      { key: 'running_time', title: 'CPU time' }, { key: 'fd_count', title: 'FDs', num: true },
      ...(isRoot ? [{ key: 'cgroup_path', title: 'cgroup' }] : []),
    ], { sort: 'percent_cpu', max: 200 });

    // Subcontainers, sortable and filterable.
    if (!leadWithTable) main.append(subSec);

    if (isRoot) {
      const fsSec = h('section', { 'aria-labelledby': 'fs' }, h('h2', { id: 'fs' }, 'Filesystems'));
      main.append(fsSec);
      const last = (info.stats || [])[(info.stats || []).length - 1];
      const fss = (last && last.filesystem) || [];
      fsSec.append(fss.length ? h('table', {}, h('thead', {}, h('tr', {}, ['Device', 'Type', 'Used', 'Capacity', 'Inodes free', ''].map(t => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, fss.map(f => h('tr', {}, h('td', {}, f.device), h('td', {}, f.type), h('td', { class: 'num' }, fmtBytes(f.usage)),
          h('td', { class: 'num' }, fmtBytes(f.capacity)), h('td', { class: 'num' }, f.has_inodes === false ? dash : String(f.inodes_free)),
          h('td', {}, h('div', { class: 'bar', role: 'img', 'aria-label': `${fmtPct(100 * f.usage / f.capacity)} used` }, h('span', { style: `width:${(100 * f.usage / Math.max(1, f.capacity)).toFixed(1)}%` })))))))
        : h('p', { class: 'note' }, 'No filesystem figures (the disk kind is off).'));
    }

    // OOM kills: the last hour at once, then each as the kernel reports it (the event stream,
    // so a kill shows within moments, not at the next poll).
    const seenOom = new Set();
    const addOom = e => {
      const key = `${e.timestamp}|${e.container_name}|${JSON.stringify(e.event_data)}`;
      if (seenOom.has(key)) return;
      seenOom.add(key);
      if (seenOom.size > 4 * POINTS) seenOom.delete(seenOom.values().next().value);
      cOom.data[0].push(Date.parse(e.timestamp) / 1000);
      cOom.data[1].push(1);
      const order = cOom.data[0].map((t, i) => i).sort((x, y) => cOom.data[0][x] - cOom.data[0][y]).slice(-POINTS);
      cOom.data = [order.map(i => cOom.data[0][i]), order.map(() => 1)];
      cOom.u.setData(cOom.data);
      const v = (e.event_data || {}).oom || {};
      const note = oomList.querySelector('li.note');
      if (note) note.remove();
      oomList.prepend(h('li', {}, h('time', { datetime: e.timestamp }, new Date(e.timestamp).toLocaleString()), ': ',
        h('strong', {}, v.process_name || 'a process'), v.pid ? ` (pid ${v.pid})` : '', ' in ',
        link(containerHref(e.container_name), e.container_name)));
      while (oomList.children.length > POINTS) oomList.lastChild.remove();
    };
    const oomQuery = `api/v1.3/events${encPath(name)}?oom_kill_events=true&subcontainers=true`;
    const start = new Date(Date.now() - 3600e3).toISOString();
    (await api(`${oomQuery}&max_events=${POINTS}&start_time=${encodeURIComponent(start)}`)).forEach(addOom);
    if (!oomList.children.length) oomList.append(h('li', { class: 'note' }, 'None in the last hour.'));
    follow(`${oomQuery}&stream=true`, addOom);
    let tick = 0;
    poll(async () => {
      const now = await api(`api/v1.3/containers${encPath(name)}?nodetel=true`, { num_stats: 3 });
      for (const s of now.stats || []) pushStats(s);
      pushRunqueue(Date.now(), rqOf(now));
      pushTcp(stampOf(now), tcpOf(now));
      if (tick++ % Math.max(1, Math.round(TABLE_EVERY / INTERVAL)) === 0) {
        subTable.set((await usage(name)).filter(r => r.path !== name));
        try {
          psTable.set((await api(`api/v2.0/ps${encPath(name)}`)).map(p => ({ ...p, search: `${p.cmd} ${p.pid} ${p.user} ${p.cgroup_path}` })));
        } catch (e) {
          if (e.unreachable) throw e;
          psTable.set([]);
        }
      }
    });
  }

  /* ---------- lists ---------- */
  async function podsPage(nsFilter) {
    main.replaceChildren(h('h1', {}, nsFilter ? `Pods in ${nsFilter}` : 'Pods'));
    document.title = 'Pods · nodetel';
    const t = table(main, 'Pods on this node, from the runtime\'s Kubernetes labels', [
      { key: 'pod', title: 'Pod', cell: r => link(`pods/${encodeURIComponent(r.ns)}/${encodeURIComponent(r.pod)}`, r.pod) },
      { key: 'ns', title: 'Namespace', cell: r => link(`pods/${encodeURIComponent(r.ns)}/`, r.ns) },
      { key: 'containers', title: 'Containers', num: true },
      { key: 'cpu', title: 'CPU', num: true, fmt: fmtCores },
      { key: 'mem', title: 'Memory (working set)', num: true, fmt: fmtBytes },
    ], { sort: 'cpu' });
    await poll(async () => {
      const pods = new Map();
      for (const r of await usage('/')) {
        if (!r.pod || (nsFilter && r.ns !== nsFilter)) continue;
        const k = `${r.ns}/${r.pod}`;
        const p = pods.get(k) || { ns: r.ns, pod: r.pod, containers: 0, cpu: 0, mem: 0, search: k };
        p.containers++;
        p.cpu += r.cpu || 0;
        p.mem += r.mem || 0;
        pods.set(k, p);
      }
      t.set([...pods.values()]);
    }, TABLE_EVERY);
  }

  async function podPage(ns, pod) {
    const rows = (await usage('/')).filter(r => r.ns === ns && r.pod === pod);
    if (!rows.length) {
      main.replaceChildren(h('h1', {}, `Pod ${ns}/${pod}`), h('p', {}, 'No container of this pod on this node. ', link('pods/', 'All pods')));
      return;
    }
    // The pod's cgroup: the parent its containers share, when the kubelet made it (its name
    // holds the pod's uid, with `_` for `-` under the systemd driver).
    const uid = rows.map(r => r.uid).find(u => u);
    const parents = new Set(rows.map(r => r.path.slice(0, r.path.lastIndexOf('/')) || '/'));
    const parent = parents.size === 1 ? [...parents][0] : null;
    if (parent && uid && (parent.includes(uid) || parent.includes(uid.replace(/-/g, '_')))) {
      return containerPage(parent, { kind: 'Pod', title: `${ns}/${pod}` });
    }
    main.replaceChildren(h('h1', {}, `Pod: ${ns}/${pod}`),
      h('p', { class: 'note' }, 'Its containers are not under a pod cgroup of the kubelet\'s, so the pod has no figures of its own here; each container\'s are below.'));
    const sec = h('section', { 'aria-labelledby': 'subs' }, h('h2', { id: 'subs' }, 'Containers'));
    main.append(sec);
    const t = table(sec, `Containers of ${ns}/${pod}`, CONTAINER_COLUMNS, { sort: 'cpu' });
    return poll(async () => t.set((await usage('/')).filter(r => r.ns === ns && r.pod === pod)), TABLE_EVERY);
  }

  async function dockerPage(id) {
    if (id) {
      const found = await api(`api/v1.3/docker/${encodeURIComponent(id)}`, { num_stats: 1 });
      const path = Object.keys(found)[0];
      return containerPage(path, { kind: 'Docker container', title: (found[path].aliases || [id])[0] });
    }
    main.replaceChildren(h('h1', {}, 'Docker containers'));
    document.title = 'Docker · nodetel';
    const t = table(main, 'Docker containers on this host', [
      { key: 'name', title: 'Container', cell: r => link(`docker/${encodeURIComponent(r.id)}`, r.name) },
      ...CONTAINER_COLUMNS.slice(1),
    ], { sort: 'cpu' });
    await poll(async () => t.set((await usage('/')).filter(r => r.runtime === 'docker' && r.id)), TABLE_EVERY);
  }

  async function swarmPage(kind, name) {
    const group = kind === 'stacks' ? 'stack' : 'service';
    main.replaceChildren(h('h1', {}, name ? `Swarm ${group}: ${name}` : 'Swarm services and stacks'));
    document.title = `${name || 'Swarm'} · nodetel`;
    const sum = (rows, key) => {
      const m = new Map();
      for (const r of rows) {
        if (!r[key]) continue;
        const g = m.get(r[key]) || { name: r[key], stack: r.stack, tasks: 0, services: new Set(), cpu: 0, mem: 0, search: `${r[key]} ${r.stack || ''}` };
        g.tasks++;
        g.services.add(r.service);
        g.cpu += r.cpu || 0;
        g.mem += r.mem || 0;
        m.set(r[key], g);
      }
      return [...m.values()].map(g => ({ ...g, services: g.services.size }));
    };
    if (name) {
      const t = table(main, `Tasks of ${group} ${name} on this node`, [
        { key: 'name', title: 'Task', cell: r => link(containerHref(r.path), r.name) },
        { key: 'service', title: 'Service', cell: r => link(`swarm/services/${encodeURIComponent(r.service)}`, r.service) },
        ...CONTAINER_COLUMNS.slice(1),
      ], { sort: 'cpu' });
      return poll(async () => t.set((await usage('/')).filter(r => r[group] === name)), TABLE_EVERY);
    }
    main.append(h('h2', {}, 'Services'));
    const svc = table(main, 'Swarm services with tasks on this node', [
      { key: 'name', title: 'Service', cell: r => link(`swarm/services/${encodeURIComponent(r.name)}`, r.name) },
      { key: 'stack', title: 'Stack', cell: r => r.stack ? link(`swarm/stacks/${encodeURIComponent(r.stack)}`, r.stack) : dash },
      { key: 'tasks', title: 'Tasks', num: true }, { key: 'cpu', title: 'CPU', num: true, fmt: fmtCores },
      { key: 'mem', title: 'Memory (working set)', num: true, fmt: fmtBytes },
    ], { sort: 'cpu' });
    main.append(h('h2', {}, 'Stacks'));
    const stacks = table(main, 'Stacks with tasks on this node', [
      { key: 'name', title: 'Stack', cell: r => link(`swarm/stacks/${encodeURIComponent(r.name)}`, r.name) },
      { key: 'services', title: 'Services', num: true }, { key: 'tasks', title: 'Tasks', num: true },
      { key: 'cpu', title: 'CPU', num: true, fmt: fmtCores }, { key: 'mem', title: 'Memory (working set)', num: true, fmt: fmtBytes },
    ], { sort: 'cpu' });
    return poll(async () => {
      const rows = await usage('/');
      svc.set(sum(rows, 'service'));
      stacks.set(sum(rows, 'stack'));
    }, TABLE_EVERY);
  }

  /* ---------- routing ---------- */
  async function route() {
    const parts = ROUTE.split('/');
    const [top, ...rest] = parts;
    const tail = rest.join('/');
    switch (top) {
      case 'containers': return containerPage('/' + tail.replace(/\/+$/, ''), {});
      case 'docker': return dockerPage(tail.replace(/\/+$/, ''));
      case 'pods': return rest[1] ? podPage(rest[0], rest[1]) : podsPage(rest[0] || '');
      case 'swarm': return swarmPage(rest[0], rest[1] || '');
      default: main.replaceChildren(h('h1', {}, 'Not a page'), h('p', {}, link('containers/', 'The machine')));
    }
  }

  // A first load that fails says so and tries again; it never spins.
  (async function start() {
    try {
      await route();
      lastOk = Date.now();
      setStatus(null);
    } catch (e) {
      setStatus(e);
      if (e.status === 404) {
        main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, e.message), h('p', {}, link('containers/', 'The machine')));
        return;
      }
      setTimeout(start, INTERVAL * 2);
    }
  })();
})();
