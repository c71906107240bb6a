from tests.conftest import audio_path


async def test_health_and_jfk(client):
    assert (await client.get("/health")).status == 200
    data = {"model": "whisper-1", "file": audio_path("en_jfk_16k.wav").open("rb")}
    response = await client.post("/v1/audio/transcriptions", data=data)
    assert response.status == 200
    assert "ask not what your country can do for you" in (await response.json())["text"].lower()
