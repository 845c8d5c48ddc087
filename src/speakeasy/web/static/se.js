// Speak Easy live updates: our own small script (no third-party code; the pages work
// without it). The server sends an event on /events whenever something shown may have
// changed; the script then fetches the same page again and swaps in the parts marked
// class="live" (by id), leaving forms being filled in alone. A live part holding a field the
// member is typing in is not replaced: a notice says there is news instead.
(function () {
  if (!window.EventSource || !window.fetch || !window.DOMParser) return;
  var busy = false, again = false;
  function editing(el) {
    var f = el.querySelectorAll('textarea, input[type=text], select');
    for (var i = 0; i < f.length; i++) {
      if (f[i] === document.activeElement || (f[i].tagName !== 'SELECT' && f[i].value)) return true;
    }
    var d = el.querySelectorAll('details[open]');
    return d.length > 0;
  }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var parts = document.querySelectorAll('.live[id]');
        var skipped = false;
        for (var i = 0; i < parts.length; i++) {
          var fresh = doc.getElementById(parts[i].id);
          if (!fresh) continue;
          if (editing(parts[i])) { skipped = true; continue; }
          parts[i].innerHTML = fresh.innerHTML;
        }
        var n = document.getElementById('live');
        if (n) n.className = skipped ? 'notice show' : 'notice';
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  new EventSource('/events').onmessage = refresh;
})();
