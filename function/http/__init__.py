"""The HTTP edge: the server (`server`), the pure ASGI layers in front of the app (`security_headers`,
`head_as_get`, `admission`, `slow_bodies`), the table of doors (`doors`) and what they say in OpenAPI (`openapi`),
the error table (`problems`), and one thin module per door under `routes/`."""
