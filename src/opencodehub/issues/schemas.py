"""Pydantic models of the issues REST API, in GitHub's REST v3 shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencodehub.accounts.models import AccountKind, OrgMembership, User
from opencodehub.accounts.schemas import ApiUrls, SimpleUser, node_id
from opencodehub.config import Settings
from opencodehub.core.time import isoformat
from opencodehub.issues import service
from opencodehub.issues.models import (
    REACTION_CONTENTS,
    Issue,
    IssueComment,
    IssueEvent,
    Label,
    Milestone,
    Reaction,
)
from opencodehub.repos.models import Collaborator, Repository
from opencodehub.repos.schemas import _In, _Out, urls_for


class ReactionRollup(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    url: str
    total_count: int
    plus_one: int = Field(alias="+1")
    minus_one: int = Field(alias="-1")
    laugh: int
    confused: int
    heart: int
    hooray: int
    eyes: int
    rocket: int

    @classmethod
    def of(cls, url: str, summary: service.ReactionSummary | None) -> ReactionRollup:
        counts = summary.counts if summary else {}
        values = {content: counts.get(content, 0) for content in REACTION_CONTENTS}
        return cls.model_validate({"url": url, "total_count": sum(values.values()), **values})


class LabelOut(_Out):
    id: int
    node_id: str
    url: str
    name: str
    description: str | None
    color: str
    default: bool

    @classmethod
    def of(cls, label: Label, repo_url: str) -> LabelOut:
        return cls(
            id=label.id,
            node_id=node_id("Label", label.id),
            url=f"{repo_url}/labels/{quote(label.name, safe='')}",
            name=label.name,
            description=label.description or None,
            color=label.color,
            default=label.is_default,
        )


class MilestoneOut(_Out):
    url: str
    html_url: str
    labels_url: str
    id: int
    node_id: str
    number: int
    state: str
    title: str
    description: str | None
    creator: SimpleUser | None
    open_issues: int
    closed_issues: int
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    due_on: datetime | None


class PullRequestLink(BaseModel):
    url: str
    html_url: str
    diff_url: str
    patch_url: str
    merged_at: str | None = None


class IssueOut(_Out):
    id: int
    node_id: str
    url: str
    repository_url: str
    labels_url: str
    comments_url: str
    events_url: str
    html_url: str
    timeline_url: str
    number: int
    state: str
    state_reason: str | None
    title: str
    body: str | None
    user: SimpleUser | None
    labels: list[LabelOut]
    assignee: SimpleUser | None
    assignees: list[SimpleUser]
    milestone: MilestoneOut | None
    locked: bool
    active_lock_reason: str | None
    comments: int
    pull_request: PullRequestLink | None = None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    closed_by: SimpleUser | None = None
    author_association: str
    reactions: ReactionRollup


class CommentOut(_Out):
    id: int
    node_id: str
    url: str
    html_url: str
    issue_url: str
    body: str
    user: SimpleUser | None
    created_at: datetime
    updated_at: datetime
    author_association: str
    reactions: ReactionRollup


class ReactionOut(_Out):
    id: int
    node_id: str
    user: SimpleUser
    content: str
    created_at: datetime


class EventOut(_Out):
    id: int
    node_id: str
    url: str
    actor: SimpleUser | None
    event: str
    commit_id: str | None = None
    commit_url: str | None = None
    created_at: datetime
    label: dict[str, str] | None = None
    assignee: SimpleUser | None = None
    milestone: dict[str, str] | None = None
    rename: dict[str, str] | None = None
    lock_reason: str | None = None
    state_reason: str | None = None


# Inputs ----------------------------------------------------------------------------------------


class IssueCreate(_In):
    title: str | int = Field(max_length=1_000)
    body: str | None = Field(default=None, max_length=200_000)
    assignee: str | None = Field(default=None, max_length=100)
    assignees: list[str] | None = Field(default=None, max_length=100)
    milestone: int | str | None = None
    labels: list[str | dict[str, Any]] | None = Field(default=None, max_length=100)


class CommentBody(_In):
    body: str = Field(max_length=200_000)


class LabelCreate(_In):
    name: str = Field(max_length=1_000)
    color: str | None = Field(default=None, max_length=20)
    description: str | None = Field(default=None, max_length=1_000)


class LabelUpdate(_In):
    new_name: str | None = Field(default=None, max_length=1_000)
    color: str | None = Field(default=None, max_length=20)
    description: str | None = Field(default=None, max_length=1_000)


class LabelNames(_In):
    labels: list[str | dict[str, Any]] = Field(default_factory=list, max_length=100)


class AssigneesBody(_In):
    assignees: list[str] = Field(default_factory=list, max_length=100)


class LockBody(_In):
    lock_reason: str | None = Field(default=None, max_length=50)


class MilestoneCreate(_In):
    title: str = Field(max_length=1_000)
    state: Literal["open", "closed"] = "open"
    description: str | None = Field(default=None, max_length=200_000)
    due_on: datetime | None = None


class ReactionCreate(_In):
    content: str = Field(max_length=20)


def label_names(values: list[str | dict[str, Any]] | None) -> list[str]:
    """GitHub takes labels as names or as `{"name": …}` objects."""
    names: list[str] = []
    for value in values or []:
        if isinstance(value, dict):
            name = value.get("name")
            if isinstance(name, str):
                names.append(name)
        else:
            names.append(value)
    return names


# Building outputs ------------------------------------------------------------------------------


class Serializer:
    """Builds the JSON of one request: caches users' association and reaction counts."""

    def __init__(self, session: Session, settings: Settings, repository: Repository) -> None:
        self.session = session
        self.settings = settings
        self.repository = repository
        self.urls: ApiUrls = urls_for(settings)
        self.repo_url = f"{self.urls.api}/repos/{repository.full_name}"
        self.html_base = f"{settings.effective_base_url}/{repository.full_name}"
        self._associations: dict[int, str] = {}

    def user(self, user: User | None) -> SimpleUser | None:
        return SimpleUser.of(user, self.urls) if user is not None else None

    def association(self, user_id: int | None) -> str:
        if user_id is None:
            return "NONE"
        if user_id in self._associations:
            return self._associations[user_id]
        repo = self.repository
        value = "NONE"
        if repo.owner_id == user_id:
            value = "OWNER"
        elif repo.owner.kind == AccountKind.ORGANIZATION and self.session.scalar(
            select(OrgMembership.id).where(
                OrgMembership.org_id == repo.owner_id, OrgMembership.user_id == user_id
            )
        ):
            value = "MEMBER"
        elif self.session.scalar(
            select(Collaborator.id).where(
                Collaborator.repository_id == repo.id, Collaborator.user_id == user_id
            )
        ):
            value = "COLLABORATOR"
        self._associations[user_id] = value
        return value

    def label(self, label: Label) -> LabelOut:
        return LabelOut.of(label, self.repo_url)

    def milestone(
        self, milestone: Milestone, counts: tuple[int, int] | None = None
    ) -> MilestoneOut:
        if counts is None:
            counts = service.milestone_counts(self.session, [milestone.id]).get(
                milestone.id, (0, 0)
            )
        url = f"{self.repo_url}/milestones/{milestone.number}"
        return MilestoneOut(
            url=url,
            html_url=f"{self.html_base}/milestone/{milestone.number}",
            labels_url=f"{url}/labels",
            id=milestone.id,
            node_id=node_id("Milestone", milestone.id),
            number=milestone.number,
            state=milestone.state,
            title=milestone.title,
            description=milestone.description or None,
            creator=self.user(milestone.creator),
            open_issues=counts[0],
            closed_issues=counts[1],
            created_at=milestone.created_at,
            updated_at=milestone.updated_at,
            closed_at=milestone.closed_at,
            due_on=milestone.due_on,
        )

    def milestones(self, rows: list[Milestone]) -> list[MilestoneOut]:
        counts = service.milestone_counts(self.session, [row.id for row in rows])
        return [self.milestone(row, counts.get(row.id, (0, 0))) for row in rows]

    def issues(self, rows: list[Issue]) -> list[IssueOut]:
        by_issue, _ = service.reaction_summaries(self.session, issue_ids=[row.id for row in rows])
        milestone_ids = [row.milestone_id for row in rows if row.milestone_id]
        counts = service.milestone_counts(self.session, milestone_ids)
        return [self.issue(row, by_issue.get(row.id), counts) for row in rows]

    def issue(
        self,
        issue: Issue,
        reactions: service.ReactionSummary | None = None,
        milestone_counts: dict[int, tuple[int, int]] | None = None,
    ) -> IssueOut:
        if reactions is None:
            reactions = service.reaction_summaries(self.session, issue_ids=[issue.id])[0].get(
                issue.id
            )
        url = f"{self.repo_url}/issues/{issue.number}"
        kind = "pull" if issue.is_pull_request else "issues"
        html_url = f"{self.html_base}/{kind}/{issue.number}"
        milestone = None
        if issue.milestone is not None:
            counts = (milestone_counts or {}).get(issue.milestone.id)
            milestone = self.milestone(issue.milestone, counts)
        pull_request = None
        if issue.is_pull_request:
            pull_request = PullRequestLink(
                url=f"{self.repo_url}/pulls/{issue.number}",
                html_url=html_url,
                diff_url=f"{html_url}.diff",
                patch_url=f"{html_url}.patch",
                merged_at=isoformat(self._merged_at(issue)),
            )
        assignees = [SimpleUser.of(user, self.urls) for user in issue.assignees]
        return IssueOut(
            id=issue.id,
            node_id=node_id("Issue", issue.id),
            url=url,
            repository_url=self.repo_url,
            labels_url=f"{url}/labels{{/name}}",
            comments_url=f"{url}/comments",
            events_url=f"{url}/events",
            html_url=html_url,
            timeline_url=f"{url}/timeline",
            number=issue.number,
            state=issue.state,
            state_reason=issue.state_reason,
            title=issue.title,
            body=issue.body or None,
            user=self.user(issue.author),
            labels=[self.label(label) for label in issue.labels],
            assignee=assignees[0] if assignees else None,
            assignees=assignees,
            milestone=milestone,
            locked=issue.locked,
            active_lock_reason=issue.active_lock_reason,
            comments=issue.comments_count,
            pull_request=pull_request,
            closed_at=issue.closed_at,
            created_at=issue.created_at,
            updated_at=issue.updated_at,
            closed_by=self.user(issue.closed_by) if issue.state == "closed" else None,
            author_association=self.association(issue.author_id),
            reactions=ReactionRollup.of(f"{url}/reactions", reactions),
        )

    def _merged_at(self, issue: Issue) -> datetime | None:
        # Imported here: the pull request tables build on this module's Issue.
        from opencodehub.pulls.models import PullRequest

        return self.session.scalar(
            select(PullRequest.merged_at).where(PullRequest.issue_id == issue.id)
        )

    def comments(self, rows: list[IssueComment]) -> list[CommentOut]:
        _, by_comment = service.reaction_summaries(
            self.session, comment_ids=[row.id for row in rows]
        )
        numbers = dict(
            self.session.execute(
                select(Issue.id, Issue.number).where(Issue.id.in_({row.issue_id for row in rows}))
            ).all()
        )
        kinds = dict(
            self.session.execute(
                select(Issue.id, Issue.is_pull_request).where(
                    Issue.id.in_({row.issue_id for row in rows})
                )
            ).all()
        )
        return [
            self.comment(
                row, numbers[row.issue_id], by_comment.get(row.id), pull=kinds[row.issue_id]
            )
            for row in rows
        ]

    def comment(
        self,
        comment: IssueComment,
        number: int,
        reactions: service.ReactionSummary | None = None,
        *,
        pull: bool = False,
    ) -> CommentOut:
        url = f"{self.repo_url}/issues/comments/{comment.id}"
        kind = "pull" if pull else "issues"
        return CommentOut(
            id=comment.id,
            node_id=node_id("IssueComment", comment.id),
            url=url,
            html_url=f"{self.html_base}/{kind}/{number}#issuecomment-{comment.id}",
            issue_url=f"{self.repo_url}/issues/{number}",
            body=comment.body,
            user=self.user(comment.author),
            created_at=comment.created_at,
            updated_at=comment.updated_at,
            author_association=self.association(comment.author_id),
            reactions=ReactionRollup.of(f"{url}/reactions", reactions),
        )

    def reaction(self, reaction: Reaction) -> ReactionOut:
        user = self.user(reaction.user)
        assert user is not None
        return ReactionOut(
            id=reaction.id,
            node_id=node_id("Reaction", reaction.id),
            user=user,
            content=reaction.content,
            created_at=reaction.created_at,
        )

    def event(self, row: IssueEvent, number: int) -> EventOut:
        data = service.event_data(row)
        out = EventOut(
            id=row.id,
            node_id=node_id("IssueEvent", row.id),
            url=f"{self.repo_url}/issues/events/{row.id}",
            actor=self.user(row.actor),
            event=row.event,
            created_at=row.created_at,
        )
        if row.event in ("labeled", "unlabeled"):
            out.label = {"name": str(data.get("name", "")), "color": str(data.get("color", ""))}
        elif row.event in ("milestoned", "demilestoned"):
            out.milestone = {"title": str(data.get("title", ""))}
        elif row.event == "renamed":
            out.rename = {"from": str(data.get("from", "")), "to": str(data.get("to", ""))}
        elif row.event in ("assigned", "unassigned"):
            assignee_id = data.get("assignee_id")
            user = self.session.get(User, assignee_id) if isinstance(assignee_id, int) else None
            out.assignee = self.user(user)
        elif row.event == "locked":
            out.lock_reason = data.get("lock_reason")
        elif row.event == "closed":
            out.state_reason = data.get("state_reason")
        commit_id = data.get("commit_id")
        if isinstance(commit_id, str) and data.get("commit_repository_id") == self.repository.id:
            out.commit_id = commit_id
            out.commit_url = f"{self.repo_url}/commits/{commit_id}"
        return out


def dump(model: BaseModel | list[Any]) -> Any:
    if isinstance(model, list):
        return [item.model_dump(mode="json", by_alias=True) for item in model]
    return model.model_dump(mode="json", by_alias=True)
