// Speak Easy live updates: our own small script (no third-party code). The server sends an
// event on /events whenever something shown may have changed; the page reloads itself then,
// unless the member is typing, in which case it only says that there is news.
(function () {
  if (!window.EventSource) return;
  var es = new EventSource('/events');
  var last = 0;
  function typing() {
    var f = document.querySelectorAll('textarea, input[type=text]');
    for (var i = 0; i < f.length; i++) if (f[i].value) return true;
    return false;
  }
  es.onmessage = function () {
    if (typing()) {
      var n = document.getElementById('live');
      if (n) n.className = 'show';
      return;
    }
    var now = Date.now();
    if (now - last < 700) return;
    last = now;
    location.reload();
  };
})();
