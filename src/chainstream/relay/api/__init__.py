"""The relay's HTTP routes, one router per resource; `create_app` (relay/app.py) includes `ROUTERS` in order.

    info.py      GET /info (health: relay/health.py; gas-free onboarding and payouts: relay/onboarding_routes.py)
    catalog.py   GET /catalog, /tracks/{trackId}
    payments.py  POST /channels/{id}/payments, POST /payments/batch, WS /payments/stream
    channels.py  a channel's summary, history, caps, cooperative close; a listener's channels
    artists.py   GET /artists/{address}/earnings
    media.py     audio upload (the track's owner), manifest, paid segments and original, deliveries
    events.py    GET /events (Server-Sent Events)
    static.py    the web player, its vendored libraries, contract ABIs and wallet config (not in the OpenAPI doc)

Dependencies (the relay and its service, reached through `request.app.state`) are in deps.py; the error format
and every exception handler in errors.py.
"""
