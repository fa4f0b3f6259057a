// Starts Swagger UI on the hub's /docs page (hub/ops/docs.py). A file of its own, not
// an inline script, so that the page's Content-Security-Policy can allow scripts from
// the hub only. The document's URL is on the page, in data-openapi-url.
"use strict";

(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    layout: "BaseLayout",
    presets: [window.SwaggerUIBundle.presets.apis],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // Nothing is sent to another site, and no URL parameter may load another document.
    validatorUrl: null,
    queryConfigEnabled: false,
    // The page reads; "Try it out" is offered for GET only.
    supportedSubmitMethods: ["get"],
  });
})();
