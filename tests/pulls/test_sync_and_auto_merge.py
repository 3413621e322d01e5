"""The background job's work without the bus: a push to a pull request's head or base, and
auto-merge once branch protection's required status turns green."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.pulls.conftest import World, commit_on, open_pull

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.background import WorkerContext
from opencodehub.core.events import EventBus
from opencodehub.db.engine import Database
from opencodehub.pulls import jobs, service
from opencodehub.pulls.models import PullRequest, PullRequestPush, RepositoryMergeSettings
from opencodehub.pulls.protection import RuleSettings, save_rule
from opencodehub.repos import statuses, store
from opencodehub.repos.models import Repository


def _push_payload(world: World, ref: str) -> dict[str, object]:
    return {"repository_id": world.repo.id, "pusher_id": world.owner.id, "updates": [{"ref": ref}]}


def test_pushes_synchronize_and_recompute_mergeability(
    client: TestClient, db: Database, settings: Settings, world: World
) -> None:
    first = commit_on(settings, world.repo, {"src/app.py": b"a = 5\n"}, branch="feature")
    open_pull(client, world)
    assert client.get(world.pull_url(1)).json()["mergeable"] is True
    context = WorkerContext(settings, db, EventBus())
    seen: list[dict] = []
    context.events.subscribe("pull_request", seen.append)

    # A force push to the head.
    git = store.open_repository(settings, world.repo.id)
    main = str(git.references["refs/heads/main"].target)
    forced = commit_on(
        settings, world.repo, {"src/app.py": b"a = 6\n"}, branch="feature", parents=[main]
    )
    assert jobs.process_push(context, _push_payload(world, "refs/heads/feature")) == 1
    with db.session() as session:
        pull = session.query(PullRequest).one()
        assert pull.head_sha == forced and pull.mergeable is True
        move = session.query(PullRequestPush).one()
        assert (move.before_sha, move.after_sha, move.forced) == (first, forced, True)
    assert str(git.references["refs/pull/1/head"].target) == forced
    assert context.events.flush()
    assert [event["action"] for event in seen] == ["synchronize"]
    assert seen[0]["head_sha"] == forced and seen[0]["number"] == 1

    # A push to the base that conflicts: mergeability recomputed, conflicting file listed.
    commit_on(settings, world.repo, {"src/app.py": b"a = 7\n"}, branch="main")
    jobs.process_push(context, _push_payload(world, "refs/heads/main"))
    with db.session() as session:
        pull = session.query(PullRequest).one()
        assert pull.mergeable is False and pull.conflicting_files == ["src/app.py"]
    # A push to an unrelated branch touches nothing.
    assert jobs.process_push(context, _push_payload(world, "refs/heads/other")) == 0
    context.events.close()


def test_auto_merge_waits_for_the_required_status(
    client: TestClient, db: Database, settings: Settings, world: World
) -> None:
    head = commit_on(settings, world.repo, {"auto.txt": b"auto\n"}, branch="feature")
    open_pull(client, world)
    with db.session() as session:
        owner = session.get(User, world.owner.id)
        actor = Actor(user=owner, method="password")
        repository = session.get(Repository, world.repo.id)
        save_rule(
            session,
            actor,
            repository,
            "main",
            RuleSettings(require_status_checks=True, required_contexts=["ci"], enforce_admins=True),
        )
        session.add(RepositoryMergeSettings(repository_id=repository.id, allow_auto_merge=True))
    refused = client.put(f"{world.pull_url(1)}/merge", json={}, headers=world.headers)
    assert refused.status_code == 405
    assert refused.json()["message"] == 'Required status check "ci" is expected.'
    with db.session() as session:
        actor = Actor(user=session.get(User, world.owner.id), method="password")
        repository = session.get(Repository, world.repo.id)
        pull = service.get_pull(session, repository, 1)
        service.enable_auto_merge(session, settings, actor, repository, pull, method="squash")
    context = WorkerContext(settings, db, EventBus())
    assert jobs.poll_auto_merge(context) == 0
    assert client.get(world.pull_url(1)).json()["auto_merge"]["merge_method"] == "squash"
    with db.session() as session:
        repository = session.get(Repository, world.repo.id)
        statuses.set_status(session, repository, head, state="success", context="ci")
    assert jobs.poll_auto_merge(context) == 1
    merged = client.get(world.pull_url(1)).json()
    assert merged["merged"] is True and merged["auto_merge"] is None
    assert merged["merged_by"]["login"] == "alice"
    context.events.close()


def test_a_failed_merge_inside_a_savepoint_publishes_nothing(
    client: TestClient, db: Database, settings: Settings, world: World, monkeypatch
) -> None:
    from opencodehub.core.errors import Conflict
    from opencodehub.pulls import merge

    commit_on(settings, world.repo, {"n.txt": b"n\n"}, branch="feature")
    open_pull(client, world)
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe("push", lambda payload: seen.append("push"))
    bus.subscribe("pull_request", lambda payload: seen.append(payload["action"]))

    def moved(*args: object, **kwargs: object) -> None:
        raise merge.RefMoved("cannot lock ref")

    monkeypatch.setattr(merge, "update_ref", moved)
    with db.session() as session:
        actor = Actor(user=session.get(User, world.owner.id), method="password")
        repository = session.get(Repository, world.repo.id)
        pull = service.get_pull(session, repository, 1)
        try:
            with session.begin_nested():
                service.merge_pull(session, settings, actor, repository, pull, events=bus)
        except Conflict as exc:
            assert exc.status_code == 409
        else:
            raise AssertionError("the merge should have failed")
    assert bus.flush()
    assert seen == []
    assert client.get(world.pull_url(1)).json()["merged"] is False
    bus.close()
