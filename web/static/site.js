/* What every page does once its script runs (pages work without it: they then show UTC
 * times with the zone named, and every form open):
 * - each <time datetime> is shown in the reader's own time zone, recent ones as "2 h ago"
 *   (the exact time stays in the tooltip), refreshed every minute;
 * - "Go back" buttons of error pages, when there is somewhere to go back to;
 * - a class's tab bar, when wider than the screen, fades where more tabs wait.
 * No inline script anywhere (CSP script-src 'self'); user text is never parsed as HTML.
 */
(function () {
  "use strict";

  const MINUTE = 60 * 1000;
  const HOUR = 60 * MINUTE;
  const RELATIVE_UNTIL = 24 * HOUR;

  // dateStyle/timeStyle cannot be combined with timeZoneName: the fields are spelled out.
  const full = new Intl.DateTimeFormat([], {
    year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit",
    timeZoneName: "short",
  });
  const dated = new Intl.DateTimeFormat([], { dateStyle: "medium", timeStyle: "short" });
  const clock = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });

  function ago(ms) {
    if (ms < MINUTE) return "just now";
    if (ms < HOUR) return Math.floor(ms / MINUTE) + " min ago";
    return Math.floor(ms / HOUR) + " h ago";
  }

  function show(node, now) {
    const date = new Date(node.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) return;
    const age = now - date.getTime();
    if (node.dataset.format === "clock") node.textContent = clock.format(date);
    else if (age >= -MINUTE && age < RELATIVE_UNTIL) node.textContent = ago(Math.max(0, age));
    else node.textContent = dated.format(date);
    node.title = full.format(date);
    node.dataset.local = "";
  }

  function showTimes() {
    const now = Date.now();
    document.querySelectorAll("time[datetime]").forEach((node) => show(node, now));
  }

  showTimes();
  setInterval(showTimes, MINUTE);
  const note = document.getElementById("zone-note");
  if (note) {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    note.textContent = "times are shown in your time zone" + (zone ? " (" + zone + ")" : "");
  }
  window.ClassroomTime = { show: (node) => show(node, Date.now()) };

  // A tab bar wider than the screen fades out on the side where more tabs wait, and the
  // current tab is scrolled into view.
  document.querySelectorAll("nav.tabs").forEach((tabs) => {
    const mark = () => {
      const more = tabs.scrollLeft + tabs.clientWidth < tabs.scrollWidth - 4;
      tabs.classList.toggle("more-right", more);
    };
    const current = tabs.querySelector("[aria-current=page]");
    if (current && tabs.scrollWidth > tabs.clientWidth) {
      tabs.scrollLeft = current.offsetLeft - tabs.clientWidth / 3;
    }
    mark();
    tabs.addEventListener("scroll", mark, { passive: true });
    window.addEventListener("resize", mark);
  });

  document.querySelectorAll("[data-go-back]").forEach((button) => {
    if (history.length < 2) return;
    button.hidden = false;
    button.addEventListener("click", () => history.back());
  });
})();
