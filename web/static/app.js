// Keyboard help for the search page: "/" focuses the search box, Escape leaves it; on a
// document, the matching passage is centred on screen; suggestions under the box as you
// type (/api/suggest, the ARIA combobox pattern). The page works without this file.
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
    } else if (event.key === "Escape" && target === box && !event.defaultPrevented) {
      box.blur();
    }
  });
  // Suggestions: debounced, one request at a time (a newer keystroke aborts the older one).
  var DEBOUNCE_MS = 120;
  function suggestions(box) {
    var list = document.getElementById(box.getAttribute("aria-controls"));
    var form = box.form;
    var timer = null, pending = null, items = [], active = -1;

    function close() {
      list.hidden = true;
      list.textContent = "";
      items = [];
      active = -1;
      box.setAttribute("aria-expanded", "false");
      box.removeAttribute("aria-activedescendant");
    }
    function mark(i) {
      active = i;
      items.forEach(function (li, n) { li.setAttribute("aria-selected", n === i ? "true" : "false"); });
      if (i < 0) box.removeAttribute("aria-activedescendant");
      else box.setAttribute("aria-activedescendant", items[i].id);
    }
    function choose(li) {
      box.value = li.dataset.text;
      close();
      form.requestSubmit ? form.requestSubmit() : form.submit();
    }
    function show(found) {
      close();
      if (!found.length || document.activeElement !== box) return;
      found.forEach(function (s, n) {
        var li = document.createElement("li");
        li.id = "suggestion-" + n;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.dataset.text = s.text;
        li.dataset.kind = s.kind;
        var kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = s.kind === "title" ? "title" : "";
        li.append(kind, document.createTextNode(s.text));
        li.addEventListener("mousedown", function (event) { event.preventDefault(); choose(li); });
        list.append(li);
        items.push(li);
      });
      list.hidden = false;
      box.setAttribute("aria-expanded", "true");
    }
    function ask() {
      var q = box.value;
      if (!q.trim() || q.length > 100) { close(); return; }
      var url = new URL(box.dataset.suggest, window.location.href);
      url.searchParams.set("q", q);
      var index = form.querySelector("select[name=index]");
      if (index && index.value && index.value !== "*") url.searchParams.set("index", index.value);
      if (pending) pending.abort();
      pending = new AbortController();
      fetch(url, { signal: pending.signal, headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : { suggestions: [] }; })
        .then(function (body) { if (box.value === q) show(body.suggestions || []); })
        .catch(function () { /* aborted by a newer keystroke, or offline: no suggestions */ });
    }
    box.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(ask, DEBOUNCE_MS);
    });
    box.addEventListener("keydown", function (event) {
      if (list.hidden) {
        if (event.key === "ArrowDown" && box.value.trim()) { event.preventDefault(); ask(); }
        return;
      }
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        var step = event.key === "ArrowDown" ? 1 : -1;
        var next = active + step;
        mark(next < -1 ? items.length - 1 : next >= items.length ? -1 : next);
      } else if (event.key === "Enter" && active >= 0) {
        event.preventDefault();
        choose(items[active]);
      } else if (event.key === "Escape") {
        event.preventDefault();  // closes the list; a second Escape leaves the box
        clearTimeout(timer);
        close();
      }
    });
    box.addEventListener("blur", function () { clearTimeout(timer); close(); });
  }

  window.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("q");
    if (box && box.dataset.suggest && window.fetch) suggestions(box);
    var hit = document.getElementById("hit");
    if (hit) {
      hit.scrollIntoView({ block: "center" });
      hit.focus({ preventScroll: true });
    }
  });
})();
