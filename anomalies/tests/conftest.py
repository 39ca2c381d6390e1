"""Fixtures of the anomalies tests."""
import pytest

from anomalies.tests.receivers import RawReceiver


@pytest.fixture
def raw_receiver():
    """Make RawReceivers; all are closed when the test ends."""
    made = []

    def make(answer, **kwargs) -> RawReceiver:
        made.append(RawReceiver(answer, **kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()
