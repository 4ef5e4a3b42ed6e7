"""The HTTP edge: the server (`server`), the pure ASGI layers in front of the app (`security_headers`,
`head_as_get`, `admission`, `slow_bodies`), the table of doors (`doors`), the error table (`problems`), the UI's
files (`web_files`), and one thin module per door under `routes/`, each with its OpenAPI text (`openapi`'s pieces)."""
