// Keyboard help for the search page: "/" focuses the search box, Escape leaves it; on a
// document, the matching passage is centred on screen. The page works without this file.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    var box = document.getElementById("q");
    if (!box || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    var typing = target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
    if (event.key === "/" && !typing) {
      event.preventDefault();
      box.focus();
      box.select();
    } else if (event.key === "Escape" && target === box) {
      box.blur();
    }
  });
  window.addEventListener("DOMContentLoaded", function () {
    var hit = document.getElementById("hit");
    if (hit) {
      hit.scrollIntoView({ block: "center" });
      hit.focus({ preventScroll: true });
    }
  });
})();
