// anvil-router web UI. Each page is a server-rendered frame; this script
// fills it from the router's JSON API (same origin). The browser is
// authenticated by its tailnet identity or by the HttpOnly session cookie:
// nothing secret is ever stored by this script. Writes carry the page's
// CSRF token. DOM is built with textContent only (never innerHTML).
(function () {
  'use strict';
  var body = document.body;
  var page = body.dataset.page;
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || '';
  var features = (body.dataset.features || '').split(' ');
  function has(f) { return features.indexOf(f) >= 0; }
  function $(s) { return document.querySelector(s); }

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === undefined || v === null || v === false) return;
        if (k === 'text') e.textContent = String(v);
        else if (k === 'onclick') e.addEventListener('click', v);
        else if (k === 'className') e.className = v;
        else e.setAttribute(k, v === true ? '' : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

  function api(method, path, payload) {
    var opts = { method: method, credentials: 'same-origin', headers: { 'Accept': 'application/json' } };
    if (method !== 'GET') {
      opts.headers['X-CSRF-Token'] = csrf;
      if (payload !== undefined) {
        opts.headers['Content-Type'] = 'application/json';
        opts.body = JSON.stringify(payload);
      }
    }
    return fetch(path, opts).then(function (res) {
      return res.text().then(function (t) {
        var data = null;
        try { data = t ? JSON.parse(t) : null; } catch (e) { data = t; }
        return { status: res.status, ok: res.ok, data: data };
      });
    });
  }
  function errMsg(r) {
    return (r.data && r.data.error && r.data.error.message) || ('HTTP ' + r.status);
  }
  function say(msg, isError) {
    var s = $('#status');
    if (!s) return;
    s.textContent = msg || '';
    s.className = isError ? 'error' : (msg ? 'notice' : '');
  }
  function fmt(n) {
    if (n === null || n === undefined || n === '') return '–';
    if (typeof n === 'number') return n % 1 === 0 ? n.toLocaleString('en') : n.toFixed(1);
    return String(n);
  }
  function td(v, cls) { return el('td', { className: cls || (typeof v === 'number' ? 'num' : null), text: fmt(v) }); }
  function kpis(target, pairs) {
    clear(target);
    pairs.forEach(function (p) { target.appendChild(el('div', null, el('dt', { text: p[0] }), el('dd', { text: fmt(p[1]) }))); });
  }
  function stateClass(s) {
    return s === 'admitting' || s === true || s === 'ready' ? 'state-ok' : (s === 'quiesced' || s === 'draining' ? 'state-warn' : 'state-bad');
  }

  // Charts: uPlot, sized to their container.
  var charts = {};
  function chart(id, label, xs, series) {
    var box = document.getElementById(id);
    if (!box || typeof uPlot === 'undefined') return;
    var width = Math.max(box.clientWidth, 260);
    var data = [xs].concat(series.map(function (s) { return s.values; }));
    var colors = ['#0b57d0', '#a4161a', '#1a6b2f', '#8a5300'];
    if (charts[id]) { charts[id].setSize({ width: width, height: 200 }); charts[id].setData(data); return; }
    clear(box);
    charts[id] = new uPlot({
      width: width, height: 200, title: '',
      series: [{}].concat(series.map(function (s, i) { return { label: s.label, stroke: colors[i % colors.length], width: 2, spanGaps: true, points: { show: true, size: 4 } }; })),
      axes: [{}, { size: 60 }],
      legend: { show: true }
    }, data, box);
    box.setAttribute('role', 'img');
    box.setAttribute('aria-label', label);
  }

  // Charts follow their container's width (phone rotation, resizing).
  window.addEventListener('resize', function () {
    Object.keys(charts).forEach(function (id) {
      var box = document.getElementById(id);
      if (box) charts[id].setSize({ width: Math.max(box.clientWidth, 260), height: 200 });
    });
  });

  // --- Dashboard
  var live = { t: [], rate: [], errors: [], lat: [], ttft: [], tok: [], last: null };
  function dashboard() {
    var tbody = $('#tier-table tbody');
    function tiers() {
      return Promise.all([api('GET', '/v1/admin/transition'), api('GET', '/v1/models/capacity')]).then(function (rs) {
        if (!rs[0].ok) { say(errMsg(rs[0]), true); return; }
        var load = {};
        ((rs[1].data && rs[1].data.data) || []).forEach(function (c) { load[c.id] = c.live || {}; });
        clear(tbody);
        rs[0].data.tiers.forEach(function (t) {
          var l = load[t.tier_id] || {};
          var serve = l.status === 'ok' || l.requests_running !== undefined && l.requests_running !== null
            ? fmt(l.requests_running) + ' running, ' + fmt(l.requests_waiting) + ' waiting' + (l.kv_cache_usage_fraction != null ? ', KV ' + Math.round(l.kv_cache_usage_fraction * 100) + '%' : '')
            : (l.status || 'unknown') + (l.reason ? ' (' + l.reason + ')' : '');
          tbody.appendChild(el('tr', null,
            el('th', { scope: 'row', text: t.tier_id }),
            el('td', { className: stateClass(t.ready), text: t.ready ? 'ready' : (t.readiness_state || 'not ready') }),
            el('td', { className: stateClass(t.state), text: t.state + (t.draining ? ' (draining)' : '') }),
            td(t.active_requests), td(l.requests_waiting === undefined ? null : l.requests_waiting), td(serve, 'load')));
        });
      });
    }
    function stats() {
      return api('GET', '/v1/stats?limit=1000').then(function (r) {
        if (!r.ok) { say(errMsg(r), true); return; }
        var d = r.data;
        var lat = d.latency_ms || {}, ttft = d.ttft_ms || {};
        kpis($('#kpis'), [['Requests (log)', d.requests.total], ['Failed', d.requests.failed],
          ['Latency p50 ms', lat.p50], ['Latency p95 ms', lat.p95], ['TTFT p50 ms', ttft.p50], ['TTFT p95 ms', ttft.p95], ['Tokens', d.tokens.total]]);
        var now = Date.now() / 1000;
        if (live.last) {
          var dt = (now - live.last.t) / 60;
          live.t.push(now);
          live.rate.push(Math.max(d.requests.total - live.last.total, 0) / dt);
          live.errors.push(Math.max(d.requests.failed - live.last.failed, 0) / dt);
          live.lat.push(lat.average == null ? null : lat.average);
          live.tok.push(Math.max(d.tokens.completion - live.last.completion, 0) / (dt * 60));
        }
        live.last = { t: now, total: d.requests.total, failed: d.requests.failed, completion: d.tokens.completion };
      });
    }
    function usageCharts() {
      var win = +$('#window').value;
      var to = Math.floor(Date.now() / 1000), from = to - win;
      var bucket = win <= 21600 ? '1m' : '1h', secs = bucket === '1m' ? 60 : 3600;
      return api('GET', '/admin/stats/usage?group_by=model&bucket=' + bucket + '&from=' + from + '&to=' + to).then(function (r) {
        if (r.status === 404) { liveCharts('usage accounting not enabled: charts show this page\'s live samples of /v1/stats'); return; }
        if (!r.ok) { say(errMsg(r), true); return; }
        var byT = {};
        (r.data.series || []).forEach(function (s) {
          (s.points || []).forEach(function (p) {
            var t = Date.parse(p.t) / 1000, a = byT[t] || (byT[t] = { requests: 0, errors: 0, output_tokens: 0, latency_ms_sum: 0, ttft_ms_sum: 0, streamed: 0 });
            ['requests', 'errors', 'output_tokens', 'latency_ms_sum', 'ttft_ms_sum', 'streamed'].forEach(function (k) { a[k] += p[k] || 0; });
          });
        });
        var ts = Object.keys(byT).map(Number).sort(function (a, b) { return a - b; });
        var per = secs / 60;
        var xs = ts, g = function (f) { return ts.map(function (t) { return f(byT[t]); }); };
        $('#charts-note').textContent = 'From /admin/stats/usage, ' + bucket + ' buckets.';
        chart('chart-rate', 'Requests per minute', xs, [{ label: 'requests/min', values: g(function (a) { return a.requests / per; }) }]);
        chart('chart-errors', 'Errors per minute', xs, [{ label: 'errors/min', values: g(function (a) { return a.errors / per; }) }]);
        chart('chart-latency', 'Mean latency and TTFT', xs, [
          { label: 'latency ms', values: g(function (a) { return a.requests ? a.latency_ms_sum / a.requests : null; }) },
          { label: 'TTFT ms', values: g(function (a) { return a.streamed ? a.ttft_ms_sum / a.streamed : null; }) }]);
        chart('chart-tokens', 'Output tokens per second', xs, [{ label: 'tokens/s', values: g(function (a) { return a.output_tokens / secs; }) }]);
      });
    }
    function liveCharts(note) {
      $('#charts-note').textContent = note + (live.t.length < 2 ? ' (collecting samples, one every 5 s)' : '');
      var xs = live.t;
      chart('chart-rate', 'Requests per minute', xs, [{ label: 'requests/min', values: live.rate }]);
      chart('chart-errors', 'Errors per minute', xs, [{ label: 'errors/min', values: live.errors }]);
      chart('chart-latency', 'Mean latency', xs, [{ label: 'latency ms', values: live.lat }]);
      chart('chart-tokens', 'Output tokens per second', xs, [{ label: 'tokens/s', values: live.tok }]);
    }
    function refresh() {
      return Promise.all([tiers(), stats()]).then(function () {
        return has('usage') ? usageCharts() : liveCharts('usage accounting not enabled: charts show this page\'s live samples of /v1/stats');
      }).then(function () { body.dataset.ready = 'true'; });
    }
    $('#window').addEventListener('change', refresh);
    setInterval(function () { if ($('#live').checked) refresh(); }, 5000);
    return refresh();
  }

  // --- Usage
  function usage() {
    var form = $('#usage-form');
    function range() { var to = Math.floor(Date.now() / 1000); return { from: to - (+$('#range').value), to: to }; }
    function load() {
      var g = $('#group_by').value, rg = range();
      var q = 'group_by=' + encodeURIComponent(g) + '&from=' + rg.from + '&to=' + rg.to;
      $('#csv').setAttribute('href', '/admin/stats/usage?' + q + '&format=csv');
      if (!has('usage')) return notEnabled();
      return api('GET', '/admin/stats/usage?' + q).then(function (r) {
        if (r.status === 404) return notEnabled();
        if (!r.ok) { say(errMsg(r), true); return; }
        var tbody = clear($('#usage-table tbody'));
        if (!(r.data.series || []).length) tbody.appendChild(el('tr', null, el('td', { colspan: 6, className: 'hint', text: 'No usage by ' + g + ' in this range.' })));
        (r.data.series || []).forEach(function (s) {
          var t = { requests: 0, errors: 0, input_tokens: 0, output_tokens: 0 };
          (s.points || []).forEach(function (p) { Object.keys(t).forEach(function (k) { t[k] += p[k] || 0; }); });
          tbody.appendChild(el('tr', { 'data-group': s.group }, el('th', { scope: 'row', text: s.group }), td(t.requests), td(t.errors), td(t.input_tokens), td(t.output_tokens),
            el('td', null, el('button', { type: 'button', className: 'secondary', text: 'Drill down', 'aria-label': 'Drill down into ' + s.group, onclick: function () { drill(g, s.group); } }))));
        });
        return api('GET', '/admin/stats').then(function (st) {
          var bt = clear($('#budget-table tbody'));
          if (!((st.ok && st.data && st.data.budgets) || []).length) bt.appendChild(el('tr', null, el('td', { colspan: 6, className: 'hint', text: 'No budgets are configured.' })));
          ((st.ok && st.data && st.data.budgets) || []).forEach(function (b) {
            bt.appendChild(el('tr', null, el('th', { scope: 'row', text: b.name }), td(b.tokens_used), td(b.tokens_per_day ? b.tokens_left : 'no limit'),
              td(b.requests_used), td(b.requests_per_day ? b.requests_left : 'no limit'), td(b.resets_at)));
          });
        });
      }).then(function () { body.dataset.ready = 'true'; });
    }
    function drill(g, id) {
      var rg = range();
      api('GET', '/admin/stats/usage?group_by=' + encodeURIComponent(g) + '&id=' + encodeURIComponent(id) + '&from=' + rg.from + '&to=' + rg.to).then(function (r) {
        if (!r.ok) { say(errMsg(r), true); return; }
        $('#drill').hidden = false;
        body.dataset.drilled = id;
        $('#drill-h').textContent = 'Drill-down: ' + id;
        var pts = ((r.data.series || [])[0] || {}).points || [];
        chart('chart-drill', 'Usage of ' + id, pts.map(function (p) { return Date.parse(p.t) / 1000; }), [
          { label: 'requests', values: pts.map(function (p) { return p.requests; }) },
          { label: 'output tokens', values: pts.map(function (p) { return p.output_tokens; }) }]);
      });
    }
    function notEnabled() { say('Usage accounting not enabled on this router.', false); $('#csv').hidden = true; body.dataset.ready = 'true'; }
    form.addEventListener('submit', function (e) { e.preventDefault(); load(); });
    return load();
  }

  // --- My usage
  function my() {
    function unavailable(msg) {
      say(msg);
      document.querySelectorAll('main section.card').forEach(function (c) { c.hidden = true; });
      body.dataset.ready = 'true';
    }
    if (has('nokey-myusage')) return unavailable('Your usage is shown to API key holders only here: [api_keys] mode is blocking.');
    if (!has('myusage')) return unavailable('Usage accounting not enabled on this router.');
    return api('GET', '/v1/usage').then(function (r) {
      if (r.status === 404) return unavailable('Usage accounting not enabled on this router.');
      if (!r.ok) { say(errMsg(r), true); return; }
      var d = r.data, t = d.today || {}, w = d.window || {};
      kpis($('#my-kpis'), [['Identity', (d.identity || {}).id], ['Requests today', t.requests], ['Input tokens today', t.input_tokens],
        ['Output tokens today', t.output_tokens], ['Requests (' + d.retention_window + ')', w.requests]]);
      var pts = d.series || [];
      chart('chart-my', 'Your requests and tokens per hour', pts.map(function (p) { return Date.parse(p.t) / 1000; }), [
        { label: 'requests', values: pts.map(function (p) { return p.requests; }) },
        { label: 'output tokens', values: pts.map(function (p) { return p.output_tokens; }) }]);
      var bs = d.budgets || (d.budget ? [d.budget] : []), box = clear($('#my-budget'));
      if (!bs.length) box.appendChild(el('p', { text: 'No budget applies to you.' }));
      bs.forEach(function (b) {
        box.appendChild(el('p', { 'data-budget': b.name }, el('strong', { text: b.name + ': ' }), document.createTextNode(
          (b.tokens_per_day ? fmt(b.tokens_left) + ' of ' + fmt(b.tokens_per_day) + ' tokens left today. ' : '') +
          (b.requests_per_day ? fmt(b.requests_left) + ' of ' + fmt(b.requests_per_day) + ' requests left today. ' : '') + 'Resets ' + b.resets_at + '.')));
      });
      if (bs.length > 1) box.appendChild(el('p', { className: 'hint', text: 'A request must fit in every one of these.' }));
    }).then(function () { body.dataset.ready = 'true'; });
  }

  // --- API keys
  function keys() {
    var tbody = $('#key-table tbody');
    function load() {
      return api('GET', '/admin/api-keys').then(function (r) {
        if (r.status === 404) { say('No API keys are configured ([api_keys] is absent).'); return; }
        if (!r.ok) { say(errMsg(r), true); return; }
        clear(tbody);
        r.data.data.forEach(function (k) {
          function act(label, fn, cls) { return el('button', { type: 'button', className: cls || 'secondary', text: label, 'aria-label': label + ' ' + k.id, 'data-action': label.toLowerCase(), onclick: fn }); }
          var editable = k.source !== 'config';
          tbody.appendChild(el('tr', { 'data-key': k.id }, el('th', { scope: 'row', text: k.id }), el('td', null, el('code', { text: k.key })),
            td(k.user_id), td((k.scopes || []).join(', ')), el('td', { className: k.enabled ? 'state-ok' : 'state-bad', text: k.enabled ? 'yes' : 'no' }),
            td(k.expires_at || 'never'),
            el('td', { className: 'actions' },
              editable ? act('Rotate', function () { action(k.id, 'rotate'); }) : null,
              editable ? act(k.enabled ? 'Disable' : 'Enable', function () { action(k.id, k.enabled ? 'disable' : 'enable'); }) : null,
              editable ? act('Edit', function () { edit(k); }) : null,
              editable ? act('Delete', function () { del(k.id); }, 'danger') : el('span', { className: 'hint', text: 'from the config file' }))));
        });
      });
    }
    function showSecret(v) {
      $('#new-key').hidden = false;
      $('#new-key-value').textContent = v.key;
      $('#copy-key').focus();
    }
    function action(id, a) {
      return api('POST', '/admin/api-keys/' + encodeURIComponent(id) + '/' + a).then(function (r) {
        if (!r.ok) { say(errMsg(r), true); return; }
        say('Key ' + id + ': ' + a + ' done.');
        if (a === 'rotate') showSecret(r.data);
        return load();
      });
    }
    function del(id) {
      if (!window.confirm('Delete key ' + id + '? Clients using it stop working.')) return;
      return api('DELETE', '/admin/api-keys/' + encodeURIComponent(id)).then(function (r) {
        if (!r.ok) { say(errMsg(r), true); return; }
        say('Key ' + id + ' deleted.');
        return load();
      });
    }
    function edit(k) {
      $('#kf-editing').value = k.id;
      $('#kf-id').value = k.id; $('#kf-id').disabled = true;
      $('#kf-user').value = k.user_id || ''; $('#kf-user').disabled = true;
      $('#kf-org').value = k.organization_id || ''; $('#kf-org').disabled = true;
      $('#kf-name').value = k.name || '';
      document.querySelectorAll('#key-form input[name=scope]').forEach(function (c) { c.checked = (k.scopes || []).indexOf(c.value) >= 0; });
      $('#kf-rate').value = k.rate_limit || 0;
      $('#kf-backends').value = (k.allowed_backends || []).join(', ');
      $('#kf-expires').value = k.expires_at ? k.expires_at.slice(0, 16) : '';
      $('#key-form-h').textContent = 'Edit key ' + k.id;
      $('#kf-submit').textContent = 'Save changes';
      $('#kf-cancel').hidden = false;
      $('#kf-name').focus();
    }
    function resetForm() {
      $('#key-form').reset(); $('#kf-editing').value = '';
      $('#kf-id').disabled = false; $('#kf-user').disabled = false; $('#kf-org').disabled = false;
      $('#key-form-h').textContent = 'Create a key'; $('#kf-submit').textContent = 'Create key'; $('#kf-cancel').hidden = true;
    }
    $('#kf-cancel').addEventListener('click', resetForm);
    $('#new-key-done').addEventListener('click', function () { $('#new-key').hidden = true; $('#new-key-value').textContent = ''; });
    $('#copy-key').addEventListener('click', function () {
      var v = $('#new-key-value').textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(v).then(function () { say('Copied.'); }, function () { say('Copy failed: select the key and copy it.', true); });
    });
    $('#key-form').addEventListener('submit', function (e) {
      e.preventDefault();
      var scopes = []; document.querySelectorAll('#key-form input[name=scope]:checked').forEach(function (c) { scopes.push(c.value); });
      var backends = $('#kf-backends').value.split(',').map(function (s) { return s.trim(); }).filter(Boolean);
      var exp = $('#kf-expires').value ? new Date($('#kf-expires').value).toISOString() : null;
      var editing = $('#kf-editing').value;
      var p = { name: $('#kf-name').value, scopes: scopes, rate_limit: +$('#kf-rate').value || 0, allowed_backends: backends };
      var req;
      if (editing) {
        // The zero time removes an expiry (policy.KeyUpdate).
        p.expires_at = exp || '0001-01-01T00:00:00Z';
        req = api('PUT', '/admin/api-keys/' + encodeURIComponent(editing), p);
      } else {
        p.user_id = $('#kf-user').value; p.organization_id = $('#kf-org').value; p.expires_at = exp;
        if ($('#kf-id').value) p.id = $('#kf-id').value;
        req = api('POST', '/admin/api-keys', p);
      }
      req.then(function (r) {
        if (!r.ok) { say(errMsg(r), true); return; }
        say(editing ? 'Key ' + editing + ' saved.' : 'Key ' + r.data.id + ' created.');
        if (!editing) showSecret(r.data);
        resetForm();
        return load();
      });
    });
    return load().then(function () { body.dataset.ready = 'true'; });
  }

  // --- Tiers
  function tiers() {
    var pending = null, byID = {};
    function load() {
      return api('GET', '/v1/admin/transition').then(function (r) {
        if (!r.ok) { say(errMsg(r), true); return; }
        var tbody = clear($('#transition-table tbody'));
        byID = {};
        r.data.tiers.forEach(function (t) {
          byID[t.tier_id] = t;
          function act(a) { return el('button', { type: 'button', className: 'secondary', text: a, 'aria-label': a + ' ' + t.tier_id, 'data-action': a, onclick: function () { dry(t.tier_id, a); } }); }
          tbody.appendChild(el('tr', { 'data-tier': t.tier_id }, el('th', { scope: 'row', text: t.tier_id }),
            el('td', { className: stateClass(t.ready), text: t.ready ? 'ready' : (t.readiness_state || 'not ready') }),
            el('td', { className: stateClass(t.state), 'data-state': t.state, text: t.state + (t.draining ? ' (draining)' : '') }), td(t.active_requests),
            el('td', { className: 'actions' }, act('quiesce'), act('drain'), act('readmit'))));
        });
      });
    }
    function dry(tier, a) {
      var p = { action: a, tier_id: tier, dry_run: true };
      if (a === 'drain') {
        // Drain has no confirm gate and no dry run in the API (the Python
        // router's contract): the preview is what the tier's current
        // status (read now, not from the table) says the drain will do.
        return load().then(function () {
          var t = byID[tier] || {};
          var preview = t.state !== 'quiesced' ? 'will be refused: drain needs a quiesced tier (quiesce it first)'
            : t.draining ? 'will be refused: a drain is already under way'
            : 'waits up to 30 s for ' + t.active_requests + ' in-flight request(s) to finish; the tier stays quiesced';
          pending = { action: a, tier_id: tier, timeout: 30 };
          showConfirm({ action: a, tier_id: tier, state: t.state, active_requests: t.active_requests, preview: preview });
        });
      }
      api('POST', '/v1/admin/transition', p).then(function (r) {
        if (!r.ok) { say(errMsg(r), true); return; }
        pending = { action: a, tier_id: tier, confirm: true, dry_run: false };
        showConfirm(r.data);
      });
    }
    function showConfirm(d) {
      $('#applied').hidden = true;
      $('#confirm').hidden = false;
      $('#dry-run').textContent = JSON.stringify(d, null, 2);
      $('#confirm-h').textContent = 'Confirm ' + pending.action + ' of ' + pending.tier_id;
      $('#confirm-yes').focus();
    }
    $('#confirm-no').addEventListener('click', function () { pending = null; $('#confirm').hidden = true; });
    $('#confirm-yes').addEventListener('click', function () {
      if (!pending) return;
      var p = pending; pending = null;
      api('POST', '/v1/admin/transition', p).then(function (r) {
        $('#confirm').hidden = true;
        if (!r.ok) { say(errMsg(r), true); return; }
        $('#applied').hidden = false;
        $('#applied-result').textContent = JSON.stringify(r.data, null, 2);
        var res = r.data.result || {};
        if (res.readmitted === false) say(p.action + ' of ' + p.tier_id + ' not done: ' + (res.reason || 'refused') + '.', true);
        else say(p.action + ' of ' + p.tier_id + ' applied.');
        return load();
      });
    });
    return load().then(function () { body.dataset.ready = 'true'; });
  }

  // --- Requests
  function requests() {
    var records = [];
    function matches(rec) {
      function m(id, v) { var f = $(id).value.trim().toLowerCase(); return !f || String(v || '').toLowerCase().indexOf(f) >= 0; }
      var ok = (rec.attempts || []).some(function (a) { return a.succeeded; });
      var st = $('#f-status').value;
      return m('#f-alias', rec.route) && m('#f-tier', rec.served_tier + ' ' + rec.requested_tier) && m('#f-id', rec.request_id) &&
        m('#f-identity', rec.identity || rec.user || rec.node || rec.key_id || '') &&
        (!st || (st === 'ok') === ok);
    }
    function render() {
      var tbody = clear($('#req-table tbody'));
      records.slice().reverse().filter(matches).forEach(function (rec) {
        var ok = (rec.attempts || []).some(function (a) { return a.succeeded; });
        tbody.appendChild(el('tr', null,
          el('th', { scope: 'row' }, el('button', { type: 'button', className: 'secondary', text: rec.request_id, onclick: function () { one(rec.request_id); } })),
          td(rec.route), td(rec.served_tier), el('td', { className: ok ? 'state-ok' : 'state-bad', text: ok ? 'succeeded' : 'failed' }),
          td(rec.total_prompt_tokens + rec.total_completion_tokens), td(rec.latency_ms)));
      });
    }
    function one(id) {
      api('GET', '/v1/requests/' + encodeURIComponent(id)).then(function (r) {
        $('#req-one').hidden = false;
        $('#req-record').textContent = r.ok ? JSON.stringify(r.data.record, null, 2) : errMsg(r);
      });
    }
    $('#req-filter').addEventListener('submit', function (e) {
      e.preventDefault();
      render();
      var id = $('#f-id').value.trim();
      if (id) one(id);
    });
    return api('GET', '/v1/decisions?limit=500').then(function (r) {
      if (!r.ok) { say(errMsg(r), true); return; }
      records = r.data.records || [];
      render();
    }).then(function () { body.dataset.ready = 'true'; });
  }

  // --- Guardrails: verdict counts by provider, stage and category; the
  // API keeps no text, and neither does this page.
  function guardrails() {
    function notConfigured() { say('Guardrails are not configured on this router.'); body.dataset.ready = 'true'; }
    if (!has('guardrails')) return notConfigured();
    return api('GET', '/admin/guardrails').then(function (r) {
      if (r.status === 404) return notConfigured();
      if (!r.ok) { say(errMsg(r), true); return; }
      var d = r.data || {};
      if (!d.enabled && !(d.providers || []).length) return notConfigured();
      function table(caption, heads, rows) {
        var t = el('table', null, el('caption', { className: 'sr', text: caption }),
          el('thead', null, el('tr', null, heads.map(function (h) { return el('th', { scope: 'col', text: h }); }).reduce(function (tr, th) { tr.appendChild(th); return tr; }, document.createDocumentFragment()))));
        var tb = el('tbody');
        if (!rows.length) tb.appendChild(el('tr', null, el('td', { colspan: heads.length, className: 'hint', text: 'None yet.' })));
        rows.forEach(function (cells) { var tr = el('tr'); cells.forEach(function (c) { tr.appendChild(td(c)); }); tb.appendChild(tr); });
        t.appendChild(tb);
        return el('div', { className: 'table-wrap' }, t);
      }
      var counts = d.counts || [];
      clear($('#guard-counts')).appendChild(el('p', { text: 'Mode ' + (d.mode || '–') + ', ' + (d.enabled ? 'enabled' : 'disabled') + '; providers: ' +
        (d.providers || []).map(function (p) { return p.name + ' (' + p.type + ', ' + (p.stages || []).join('+') + ')'; }).join(', ') }));
      $('#guard-counts').appendChild(table('Verdicts by provider, stage and category', ['Provider', 'Stage', 'Verdict', 'Category', 'Count'],
        counts.map(function (c) { return [c.provider, c.stage, c.verdict, c.category || '–', c.count]; })));
      var acted = counts.filter(function (c) { return c.verdict !== 'allow' && c.verdict !== 'pass' && c.verdict !== 'error'; });
      clear($('#guard-recent')).appendChild(table('Blocked or masked, by type', ['Verdict', 'Category', 'Provider', 'Count'],
        acted.map(function (c) { return [c.verdict === 'transform' ? 'masked (transform)' : c.verdict, c.category || '–', c.provider, c.count]; })));
      body.dataset.ready = 'true';
    });
  }

  // --- Config
  function config() {
    return api('GET', '/admin/config').then(function (r) {
      if (!r.ok) { say(errMsg(r), true); return; }
      $('#config-hash').textContent = r.data.config_hash;
      $('#config-body').textContent = JSON.stringify(r.data.config, null, 2);
      body.dataset.ready = 'true';
    });
  }

  var pages = { dashboard: dashboard, usage: usage, my: my, keys: keys, tiers: tiers, requests: requests, guardrails: guardrails, config: config };
  function start() {
    var f = pages[page];
    if (!f) { body.dataset.ready = 'true'; return; }
    Promise.resolve(f()).catch(function (e) { say('Could not load: ' + e.message, true); });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
