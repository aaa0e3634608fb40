// errands dashboard: the only script (CSP: script-src 'self'). The pages work without it.
// 1. "refresh every 5 s" checkboxes, remembered per page in localStorage.
// 2. <time datetime="..."> shown in the browser's time zone, UTC kept in the tooltip.
(function () {
  "use strict";
  var key = "errands.autorefresh:" + location.pathname;
  var box = document.getElementById("autorefresh");
  if (box) {
    box.checked = localStorage.getItem(key) === "1";
    var timer = null;
    var arm = function () {
      if (timer) { clearTimeout(timer); timer = null; }
      if (box.checked) { timer = setTimeout(function () { location.reload(); }, 5000); }
    };
    box.addEventListener("change", function () {
      localStorage.setItem(key, box.checked ? "1" : "0");
      arm();
    });
    arm();
  }
  var times = document.querySelectorAll("time[datetime]");
  for (var i = 0; i < times.length; i++) {
    var when = new Date(times[i].getAttribute("datetime"));
    if (!isNaN(when.getTime())) {
      times[i].title = times[i].textContent;
      times[i].textContent = when.toLocaleString();
    }
  }
})();
