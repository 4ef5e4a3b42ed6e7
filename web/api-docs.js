// The API documentation at /schema/swagger: Swagger UI (npm's swagger-ui-dist, served by the function itself, so
// the page loads nothing from another host) over the function's OpenAPI document, whose URL the page names.
const root = document.getElementById("swagger-ui");
window.SwaggerUIBundle({
  url: root.dataset.openapi,
  domNode: root,
  deepLinking: true,
  validatorUrl: null, // Swagger UI's default sends the document to validator.swagger.io for a badge
});
