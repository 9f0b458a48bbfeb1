// The console's one script besides htmx. The pages work by htmx attributes alone; this only makes
// failures visible: a lost session goes back to the login page, and an answer that is not one of the
// console's own HTML fragments (a refusal by the gateway's auth, an unreachable gateway) is shown in
// the banner at the top instead of being swapped into the page or failing silently.
(function () {
  "use strict";

  function flash(text) {
    var banner = document.getElementById("flash");
    if (!banner) return;
    banner.textContent = text;
    banner.hidden = !text;
  }

  function reason(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.message) return body.message;
    } catch (ignored) { /* not JSON */ }
    return "the gateway answered " + xhr.status + (xhr.statusText ? " " + xhr.statusText : "");
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    // 401: the session is gone; a request that ended at the login page was redirected there
    if (xhr.status === 401 || (xhr.responseURL && /\/ui\/login$/.test(new URL(xhr.responseURL).pathname))) {
      window.location.assign("/ui/login");
      return;
    }
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (xhr.status >= 400 && type.indexOf("text/html") !== 0) {
      event.detail.shouldSwap = false;
      flash(reason(xhr));
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful) flash("");
  });

  document.addEventListener("htmx:sendError", function () {
    flash("the gateway does not answer: is it still running?");
  });
})();
