"""The product registry: MAHs read their own products, regulators read and change any."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import AuditActor, Reader, RegistryDep, Regulator, RuntimeDep, VisibleProduct
from api.problems import ConflictError
from api.schemas import ProductIn, ProductList, ProductOut
from pvsignal.audit import Actor, recorded
from pvsignal.errors import InputError
from pvsignal.products import RegisteredProduct, Registry

router = APIRouter(prefix="/v1/products", tags=["products"])


@router.get("", response_model=ProductList, summary="Registered products the caller may see")
def list_products(principal: Reader, registry: RegistryDep) -> ProductList:
    visible = [
        ProductOut(**product.model_dump())
        for product in registry.registry
        if registry.can_see(principal, product.product_id)
    ]
    return ProductList(products=sorted(visible, key=lambda p: p.product_id))


@router.get("/{product_id}", response_model=ProductOut, summary="One registered product")
def get_product(product: VisibleProduct) -> ProductOut:
    return ProductOut(**product.model_dump())


@router.put(
    "/{product_id}",
    response_model=ProductOut,
    summary="Register or change a product (regulators)",
    description="When names, kind or pathway change and cases exist, every case is recounted "
    "under the new registry (a new alias can change which product a report names).",
    responses={409: {"description": "a name or alias is another product's"}},
)
async def put_product(
    product_id: str, body: ProductIn, principal: Regulator, actor: AuditActor, runtime: RuntimeDep
) -> ProductOut:
    return await run_in_threadpool(_save, runtime, product_id, body, actor)


def _save(runtime: RuntimeDep, product_id: str, body: ProductIn, actor: Actor) -> ProductOut:
    try:
        product = RegisteredProduct(product_id=product_id, **body.model_dump())
    except ValueError as error:
        raise InputError(f"product {product_id!r}: {error}") from None
    current = runtime.registry.current()
    _check_aliases(current.registry, product)
    previous = current.get(product_id)
    before = None if previous is None else previous.model_dump(mode="json")
    with runtime.pool.store() as store:
        with recorded(store, actor, "product.put", "product", product_id, before=before) as rec:
            store.save_products([product])
            rec.after = product.model_dump(mode="json")
        has_cases = bool(store.count_cases().get("active"))
    runtime.registry.invalidate()
    recounted = None
    if has_cases and _changes_counts(previous, product):
        recounted = runtime.intake.recount()
    return ProductOut(**product.model_dump(), recounted_cases=recounted)


def _check_aliases(registry: Registry, product: RegisteredProduct) -> None:
    trial = Registry(registry)
    try:
        trial.add(product)
    except InputError as error:
        raise ConflictError(str(error)) from None


def _changes_counts(previous: RegisteredProduct | None, product: RegisteredProduct) -> bool:
    if previous is None:
        return True
    return (previous.names, previous.kind, previous.pathway) != (
        product.names,
        product.kind,
        product.pathway,
    )
