// The check-in page: asks the browser for its position, shows the nearest site and whether the position is inside
// its geofence, sends the check to the API (same session cookie), and queues it on the phone while offline.
(() => {
  'use strict';
  const root = document.getElementById('checkin');
  if (!root) return;
  const sites = JSON.parse(root.dataset.sites || '[]');
  const timeZone = root.dataset.timeZone || undefined;
  const needsPosition = root.dataset.needsPosition === 'true';
  const queueKey = root.dataset.queueKey || 'attendux.queue';
  const $ = (id) => document.getElementById(id);
  const buttons = $('buttons');
  let position = null;
  let flushing = false;

  const say = (id, text, kind) => {
    const el = $(id);
    el.textContent = text;
    el.className = kind || '';
  };
  const clock = (iso) =>
    new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', timeZone }).format(new Date(iso));
  const metres = (m) => `${Math.round(m)} m`;

  // The server's judgement (src/core/attendance/geofence.ts), repeated here only to tell the person beforehand.
  const distance = (lat1, lon1, lat2, lon2) => {
    const rad = Math.PI / 180;
    const a =
      Math.sin(((lat2 - lat1) * rad) / 2) ** 2 +
      Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(((lon2 - lon1) * rad) / 2) ** 2;
    return 2 * 6371008.8 * Math.asin(Math.min(1, Math.sqrt(a)));
  };
  const nearest = (p) => {
    let best = null;
    for (const s of sites) {
      const d = distance(p.latitude, p.longitude, s.latitude, s.longitude);
      if (!best || d - s.radiusM < best.d - best.site.radiusM) best = { site: s, d };
    }
    return best;
  };
  const siteName = (id) => (sites.find((s) => s.id === id) || { name: 'a site' }).name;

  function showPosition() {
    if (!sites.length)
      return say('position', 'Position found. Your company has no sites to check it against.');
    const n = nearest(position);
    const margin = n.d - n.site.radiusM;
    const where =
      margin + position.accuracy <= 0
        ? `inside its geofence (radius ${metres(n.site.radiusM)})`
        : margin - position.accuracy > 0
          ? `outside its geofence (radius ${metres(n.site.radiusM)})`
          : `at the edge of its geofence (radius ${metres(n.site.radiusM)}); your position is only accurate to ${metres(position.accuracy)}`;
    say(
      'position',
      `Nearest site: ${n.site.name}, ${metres(n.d)} away, ${where}.`,
      margin <= 0 ? 'ok' : 'problem',
    );
  }

  function noPosition(why) {
    position = null;
    say('position', why, 'problem');
    $('no-position').hidden = false;
    for (const b of buttons.querySelectorAll('[data-kind]')) b.disabled = needsPosition;
  }

  function locate() {
    buttons.hidden = false;
    if (!navigator.geolocation) return noPosition('This browser cannot tell its position.');
    say('position', 'Finding your position…');
    navigator.geolocation.getCurrentPosition(
      (p) => {
        position = {
          latitude: p.coords.latitude,
          longitude: p.coords.longitude,
          accuracy: p.coords.accuracy,
        };
        $('no-position').hidden = true;
        for (const b of buttons.querySelectorAll('[data-kind]')) b.disabled = false;
        showPosition();
      },
      (err) =>
        noPosition(
          err.code === 1
            ? 'Your browser did not share your position (location access is not allowed for this page).'
            : 'Your position is unavailable right now.',
        ),
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 30000 },
    );
  }

  const verb = (kind) => (kind === 'check_in' ? 'Checked in' : 'Checked out');
  const noun = (kind) => (kind === 'check_in' ? 'check-in' : 'check-out');
  function described(ev) {
    const flag = ev.flagged ? ', flagged for review' : '';
    if (ev.geofence === 'inside') return `inside ${siteName(ev.siteId)}`;
    if (ev.geofence === 'outside')
      return `outside ${siteName(ev.siteId)} (${metres(ev.distanceM)} away)${flag}`;
    if (ev.geofence === 'unknown')
      return ev.siteId ? `at the edge of ${siteName(ev.siteId)}${flag}` : `without a position${flag}`;
    return 'no position check';
  }

  const post = (kind, body) =>
    fetch(kind === 'check_in' ? '/api/v1/attendance/check-in' : '/api/v1/attendance/check-out', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify(body),
    });
  const problemOf = async (res) => {
    if (res.status === 401) return 'your session ended; sign in again';
    try {
      return (await res.json()).error.message;
    } catch {
      return `the server answered ${res.status}`;
    }
  };

  const queued = () => {
    try {
      return JSON.parse(localStorage.getItem(queueKey) || '[]');
    } catch {
      return []; // A damaged queue is dropped rather than blocking every later check.
    }
  };
  const store = (list) =>
    list.length ? localStorage.setItem(queueKey, JSON.stringify(list)) : localStorage.removeItem(queueKey);
  function showQueue() {
    const n = queued().length;
    say(
      'queue',
      n ? `${n} check${n > 1 ? 's' : ''} queued on this phone, sent when you are back online.` : '',
    );
  }
  function enqueue(kind, body, deviceTime) {
    store([...queued(), { kind, body, deviceTime }]);
    say(
      'result',
      `No network: your ${noun(kind)} at ${clock(deviceTime)} is queued on this phone.`,
      'problem',
    );
    showQueue();
  }

  async function flush() {
    if (flushing || !navigator.onLine) return;
    flushing = true;
    try {
      for (let list = queued(); list.length; list = queued()) {
        const q = list[0];
        let res;
        try {
          res = await post(q.kind, { ...q.body, offline: true, deviceTime: q.deviceTime });
        } catch {
          return; // Still offline: the queue waits for the next `online` event or page load.
        }
        if (res.status === 401)
          return say('queue', 'Your queued checks wait: sign in again to send them.', 'problem');
        store(list.slice(1));
        if (res.ok) {
          const ev = await res.json();
          say(
            'result',
            `Sent your queued ${noun(q.kind)} from ${clock(q.deviceTime)}: ${described(ev)}.`,
            'ok',
          );
        } else {
          const why = await problemOf(res);
          say(
            'result',
            `Your queued ${noun(q.kind)} from ${clock(q.deviceTime)} was refused: ${why}.`,
            'problem',
          );
        }
      }
    } finally {
      flushing = false;
      showQueue();
    }
  }

  async function check(kind) {
    const body = position ? { position } : {};
    const deviceTime = new Date().toISOString();
    if (!navigator.onLine) return enqueue(kind, body, deviceTime);
    say('result', 'Sending…');
    let res;
    try {
      res = await post(kind, body);
    } catch {
      return enqueue(kind, body, deviceTime); // The network failed on the way: keep the check.
    }
    if (res.ok) {
      const ev = await res.json();
      say(
        'result',
        `${verb(kind)} at ${clock(ev.occurredAt)}, ${described(ev)}.`,
        ev.flagged ? 'problem' : 'ok',
      );
    } else say('result', `Not ${verb(kind).toLowerCase()}: ${await problemOf(res)}.`, 'problem');
  }

  for (const b of buttons.querySelectorAll('[data-kind]'))
    b.addEventListener('click', () => void check(b.dataset.kind));
  $('locate').addEventListener('click', locate);
  window.addEventListener('online', () => void flush());
  window.addEventListener('offline', showQueue);
  locate();
  showQueue();
  void flush();
})();
