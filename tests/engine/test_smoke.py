from triomem import Engine


async def test_remember_then_get(engine: Engine) -> None:
    stored = await engine.remember("the user prefers dark mode", tags=["ui"])
    assert stored.created
    assert (await engine.get(stored.memory.id)).content == "the user prefers dark mode"
