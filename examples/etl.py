"""A realistic many-to-many pipeline: three CSV sources, per-source cleaning, cross joins, a report.

    dagrq run examples/etl.py:dag
    dagrq run examples/etl.py:dag -p day=2026-11-27 -p rows=5000

The sources are generated into a temporary folder (deterministic for a given seed), so the
example needs nothing but dagrq. Node outputs are pydantic models and lists of them: they
travel as JSON and arrive typed in every child.

    orders_csv ──> orders ──┬──────────────> customer_ltv ──┐
    customers_csv ─> customers ─┬─> enriched ─> revenue ────┼──> report
    products_csv ──> products ──┴──────────────> top_products ┘
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
import tempfile
from collections import defaultdict
from datetime import date
from pathlib import Path

from pydantic import BaseModel

from dagrq import DAG

dag = DAG("etl")

REGIONS = ("north", "south", "east", "west")
#: the business day the example reports on, unless -p day=YYYY-MM-DD says otherwise
DAY = date(2026, 11, 27)


class Order(BaseModel):
    order_id: int
    customer_id: int
    sku: str
    quantity: int


class Customer(BaseModel):
    customer_id: int
    name: str
    region: str


class Product(BaseModel):
    sku: str
    title: str
    price_cents: int


class Line(BaseModel):
    order_id: int
    region: str
    sku: str
    revenue_cents: int


# ------------------------------------------------------------------ sources
@dag.node
def customers_csv(day: date = DAY, seed: int = 7, n_customers: int = 50) -> str:
    """Write today's customer export; return its path."""
    rng = random.Random(f"{seed}-{day}-customers")
    rows = [
        {"id": i, "name": f"customer {i}", "region": rng.choice(REGIONS).upper()}
        for i in range(1, n_customers + 1)
    ]
    return _write(day, "customers", ["id", "name", "region"], rows)


@dag.node
def products_csv(day: date = DAY, seed: int = 7) -> str:
    """Write the product catalogue; prices as text with a currency sign, as exports do."""
    rng = random.Random(f"{seed}-{day}-products")
    rows = [
        {
            "sku": f"SKU-{i:03d}",
            "title": f"product {i}",
            "price": f"${rng.randint(100, 9999) / 100:.2f}",
        }
        for i in range(1, 21)
    ]
    return _write(day, "products", ["sku", "title", "price"], rows)


@dag.node
def orders_csv(day: date = DAY, rows: int = 500, seed: int = 7, n_customers: int = 50) -> str:
    """Write the day's orders, with the usual dirt: blank quantities and unknown SKUs."""
    rng = random.Random(f"{seed}-{day}-orders")
    out = []
    for i in range(1, rows + 1):
        sku = f"SKU-{rng.randint(1, 22):03d}"  # SKU-021/022 do not exist
        quantity = "" if rng.random() < 0.03 else str(rng.randint(1, 5))
        out.append({"id": i, "customer": rng.randint(1, n_customers), "sku": sku, "qty": quantity})
    return _write(day, "orders", ["id", "customer", "sku", "qty"], out)


# ------------------------------------------------------------------ cleaning
@dag.node
def orders(orders_csv: str) -> list[Order]:
    """Parse orders; drop rows without a quantity."""
    return [
        Order(
            order_id=int(r["id"]),
            customer_id=int(r["customer"]),
            sku=r["sku"],
            quantity=int(r["qty"]),
        )
        for r in _read(orders_csv)
        if r["qty"].strip()
    ]


@dag.node
def customers(customers_csv: str) -> list[Customer]:
    """Parse customers; normalise region names."""
    return [
        Customer(customer_id=int(r["id"]), name=r["name"], region=r["region"].strip().lower())
        for r in _read(customers_csv)
    ]


@dag.node
def products(products_csv: str) -> list[Product]:
    """Parse products; prices to integer cents."""
    return [
        Product(
            sku=r["sku"], title=r["title"], price_cents=round(float(r["price"].lstrip("$")) * 100)
        )
        for r in _read(products_csv)
    ]


# ------------------------------------------------------------------ joins
@dag.node
def enriched(orders: list[Order], customers: list[Customer], products: list[Product]) -> list[Line]:
    """A three-way join: one revenue line per order whose SKU and customer are known."""
    region = {c.customer_id: c.region for c in customers}
    price = {p.sku: p.price_cents for p in products}
    return [
        Line(
            order_id=o.order_id,
            region=region[o.customer_id],
            sku=o.sku,
            revenue_cents=o.quantity * price[o.sku],
        )
        for o in orders
        if o.sku in price and o.customer_id in region
    ]


@dag.node
def revenue(enriched: list[Line]) -> dict[str, int]:
    """Revenue per region, in cents."""
    out: dict[str, int] = defaultdict(int)
    for line in enriched:
        out[line.region] += line.revenue_cents
    return dict(sorted(out.items()))


@dag.node
def top_products(
    enriched: list[Line], products: list[Product], top: int = 3
) -> list[tuple[str, int]]:
    """The best sellers by revenue, with their titles."""
    title = {p.sku: p.title for p in products}
    out: dict[str, int] = defaultdict(int)
    for line in enriched:
        out[title[line.sku]] += line.revenue_cents
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


@dag.node
def customer_ltv(orders: list[Order], customers: list[Customer]) -> dict[str, float]:
    """Orders per customer, averaged by region."""
    region = {c.customer_id: c.region for c in customers}
    count: dict[str, int] = defaultdict(int)
    for o in orders:
        count[region.get(o.customer_id, "unknown")] += 1
    people: dict[str, int] = defaultdict(int)
    for c in customers:
        people[c.region] += 1
    return {r: round(count[r] / people[r], 2) for r in sorted(people)}


@dag.node
def report(
    revenue: dict[str, int],
    top_products: list[tuple[str, int]],
    customer_ltv: dict[str, float],
    day: date = DAY,
) -> str:
    """The day's report, as text."""
    lines = [f"Sales report for {day.isoformat()}", ""]
    lines.append("revenue by region:")
    lines += [f"  {r:<6} {cents / 100:>12,.2f}" for r, cents in revenue.items()]
    lines.append(f"  {'total':<6} {sum(revenue.values()) / 100:>12,.2f}")
    lines.append("top products:")
    lines += [f"  {t:<12} {cents / 100:>10,.2f}" for t, cents in top_products]
    lines.append("orders per customer:")
    lines += [f"  {r:<6} {v:>6.2f}" for r, v in customer_ltv.items()]
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers
def _folder(day: date) -> Path:
    folder = Path(tempfile.gettempdir(), "dagrq-etl", day.isoformat())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write(day: date, name: str, fields: list[str], rows: list[dict[str, object]]) -> str:
    """Write ``rows`` as CSV under a name made from their content: a path names one content
    for good, so a cached node's output (the path) can never point at other data."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    data = text.getvalue().encode()
    path = _folder(day) / f"{name}-{hashlib.sha256(data).hexdigest()[:12]}.csv"
    if not path.exists():  # written whole, then renamed: a reader never sees half a file
        part = path.with_suffix(f".{os.getpid()}.part")
        part.write_bytes(data)
        part.replace(path)
    return str(path)


def _read(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
