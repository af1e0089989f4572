"""orjson vs msgspec for lowtide's value codec: encode/decode time per value, side by side.

Run: ``python -m benchmarks.codec`` (needs the dev extra for msgspec).
"""

from __future__ import annotations

import msgspec
import orjson

from benchmarks._common import per_call_us, table, write
from lowtide.codec import JsonCodec

SMALL = {"tenant": "t1", "plan": "pro", "quota": 5_000_000, "ok": True}
PROFILE = {
    "id": 12345,
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "tags": ["a", "b", "c"],
    "settings": {"tz": "UTC", "lang": "en", "n": [1, 2, 3, 4, 5]},
    "score": 3.14159,
    "active": True,
    "notes": "x" * 200,
}
BIG = {"items": [dict(PROFILE, id=i) for i in range(100)]}


def main() -> None:
    """Measure and report."""
    enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder()
    codec = JsonCodec()
    rows = []
    results = {}
    for name, value, n in (
        ("small", SMALL, 20_000),
        ("profile", PROFILE, 20_000),
        ("37KB", BIG, 500),
    ):
        ob = orjson.dumps(value)
        mb = enc.encode(value)
        r = {
            "bytes": len(ob),
            "orjson_encode_us": per_call_us(lambda v=value: orjson.dumps(v), n),
            "msgspec_encode_us": per_call_us(lambda v=value: enc.encode(v), n),
            "orjson_decode_us": per_call_us(lambda b=ob: orjson.loads(b), n),
            "msgspec_decode_us": per_call_us(lambda b=mb: dec.decode(b), n),
            # lowtide's JsonCodec: the same orjson call after the walk that refuses values
            # that would not read back as written
            "lowtide_encode_us": per_call_us(lambda v=value: codec.encode(v), n),
        }
        results[name] = r
        rows.append(
            [name, r["bytes"]]
            + [
                f"{r[k]:.2f}"
                for k in (
                    "orjson_encode_us",
                    "lowtide_encode_us",
                    "msgspec_encode_us",
                    "orjson_decode_us",
                    "msgspec_decode_us",
                )
            ]
        )
    print(
        table(
            [
                "value",
                "bytes",
                "orjson enc µs",
                "JsonCodec enc µs",
                "msgspec enc µs",
                "orjson dec µs",
                "msgspec dec µs",
            ],
            rows,
        )
    )
    print("wrote", write("codec", {"results": results}))


if __name__ == "__main__":
    main()
