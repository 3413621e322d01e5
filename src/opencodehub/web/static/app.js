// OpenCodeHub's page behaviour. Loaded from our origin only (the CSP forbids inline scripts).
(function () {
  "use strict";

  var root = document.documentElement;
  var THEME_COOKIE = "och_theme";

  function systemPrefersDark() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  function currentTheme() {
    var chosen = root.getAttribute("data-theme");
    if (chosen === "light" || chosen === "dark") return chosen;
    return systemPrefersDark() ? "dark" : "light";
  }

  function setTheme(theme) {
    root.setAttribute("data-theme", theme);
    var secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie =
      THEME_COOKIE + "=" + theme + "; Path=/; Max-Age=31536000; SameSite=Lax" + secure;
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;

    var toggle = target.closest("[data-theme-toggle]");
    if (toggle) {
      setTheme(currentTheme() === "dark" ? "light" : "dark");
      return;
    }

    var copy = target.closest("[data-copy-target]");
    if (copy) {
      var source = document.getElementById(copy.getAttribute("data-copy-target"));
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          copy.textContent = "Copied";
        }, function () {
          copy.textContent = "Select and copy";
        });
      }
      return;
    }

    // Close open menus when clicking elsewhere.
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(target)) menu.removeAttribute("open");
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      menu.removeAttribute("open");
    });
  });

  // Destructive actions ask first: <form data-confirm="Delete this key?">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // htmx requests carry the CSRF token as a header.
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });
})();

// Code browsing: linkable line ranges (#L10-L20, shift-click extends), the branch/tag filter,
// and README heading links (#slug scrolls to the sanitized id="user-content-slug").
(function () {
  "use strict";

  var anchor = null;

  function parseRange(hash) {
    var match = /^#L(\d+)(?:-L(\d+))?$/.exec(hash || "");
    if (!match) return null;
    var start = parseInt(match[1], 10);
    var end = match[2] ? parseInt(match[2], 10) : start;
    return start <= end ? [start, end] : [end, start];
  }

  function highlightRange(range, scroll) {
    document.querySelectorAll("tr.line-selected").forEach(function (row) {
      row.classList.remove("line-selected");
    });
    if (!range) return;
    for (var line = range[0]; line <= range[1] && line - range[0] < 100000; line++) {
      var row = document.getElementById("L" + line);
      if (row) row.classList.add("line-selected");
    }
    var first = document.getElementById("L" + range[0]);
    if (first && scroll) first.scrollIntoView({ block: "center" });
  }

  function onHash(scroll) {
    var range = parseRange(location.hash);
    if (range) {
      anchor = range[0];
      highlightRange(range, scroll);
      return;
    }
    var id = decodeURIComponent((location.hash || "").slice(1));
    if (id && !document.getElementById(id)) {
      var target = document.getElementById("user-content-" + id);
      if (target && scroll) target.scrollIntoView();
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var link = target ? target.closest("a[data-line]") : null;
    if (!link) return;
    event.preventDefault();
    var line = parseInt(link.getAttribute("data-line"), 10);
    var hash = "#L" + line;
    if (event.shiftKey && anchor !== null && anchor !== line) {
      var low = Math.min(anchor, line);
      var high = Math.max(anchor, line);
      hash = "#L" + low + "-L" + high;
    } else {
      anchor = line;
    }
    history.replaceState(null, "", hash);
    highlightRange(parseRange(hash), false);
  });

  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.hasAttribute("data-ref-filter")) return;
    var needle = input.value.toLowerCase();
    var panel = input.closest(".menu-panel");
    if (!panel) return;
    panel.querySelectorAll("[data-ref-item]").forEach(function (item) {
      item.hidden = needle !== "" && item.textContent.toLowerCase().indexOf(needle) === -1;
    });
  });

  window.addEventListener("hashchange", function () { onHash(true); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { onHash(true); });
  } else {
    onHash(true);
  }
})();
