"""A realistic synthetic organisation, deterministic from a seed.

Used by ``dora-pipeline demo``, the tests and the benchmarks. Every event of a day is a
pure function of (seed, service, day), so extracting one day never needs the others
and re-extracting a day yields the same records.

What it holds, on purpose:
- a group tree (engineering -> departments -> teams), users with memberships, services
  owned by teams, one repository the catalog does not know (fallback refs), and one
  library component that never deploys (its frequency tier stays NULL);
- PRs with first commit, first review and merge times; some squash-merged (the deploy
  carries the head SHA), some merged and shipped by a later deploy, some never deployed;
- staging and production deploys, failed attempts, redeploys that ship no PR;
- incidents caused by a change, explicitly not caused by one, unknown, some affecting
  two services, some still open (deploys while one is open are rework; failed deploys
  whose incidents are all resolved give the failed-deployment recovery time);
- a monorepo (``acme/mono``, from 8 services on): two services in folders of it
  (``backstage.io/source-location`` ending in ``services/<name>/``) and one at its root,
  deployed as ArgoCD apps, with PR file lists: most PRs change one folder, some two,
  the root service's only root files;
- monthly pulse surveys with one team below k members and a few invalid scores;
- a trunk-based team (one more team than DORA_SYNTHETIC_TEAMS asks for) whose two
  services never open a PR: every change is a commit pushed to the default branch and
  shipped by continuous deployment, by its own SHA or by the next deploy.
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from ..records import (
    CatalogEntity,
    Deployment,
    DirectChange,
    GroupMembership,
    Incident,
    PullRequest,
    PullRequestFiles,
    SurveyResponse,
)

SOURCE = "synthetic"
ORG = "acme"
EPOCH = date(2024, 1, 1)  # day numbers (PR numbers) count from here
MONOREPO = f"{ORG}/mono"
MONOREPO_SERVICES = (2, 3, 4)  # service indexes: two in folders, the last at the root
MONOREPO_MIN_SERVICES = 8

_WORDS = (
    "payments", "checkout", "search", "catalog", "orders", "billing", "identity", "profile",
    "inventory", "shipping", "pricing", "reviews", "ledger", "notify", "ads", "media",
    "gateway", "ratings", "fraud", "loyalty", "reports", "export", "ingest", "quotes",
)
_SUFFIX = ("api", "web", "worker", "service", "jobs", "svc")
_TEAM_WORDS = (
    "atlas", "borealis", "comet", "delta", "ember", "falcon", "glacier", "harbor",
    "indigo", "juniper", "kestrel", "lumen", "meteor", "nimbus", "orbit", "prism",
)


@dataclass(frozen=True)
class Profile:
    deploys_per_day: float  # production
    lead_hours: float  # typical first commit -> merge
    failure_prob: float  # chance a production deploy causes an incident
    restore_minutes: float  # median time to restore


PROFILES = (
    Profile(4.5, 10, 0.02, 35),  # elite-ish
    Profile(2.5, 30, 0.06, 180),
    Profile(0.8, 90, 0.12, 900),
    Profile(0.2, 400, 0.25, 4000),  # struggling
)
# Weekend deploys run at this share of a weekday's. With the profiles above, 1,000
# services over 365 days give ~730,000 production deploys, ~1.5 million merged PRs
# and ~36,000 incidents: the "large" benchmark (docs/performance.md).
WEEKEND_DEPLOY_FACTOR = 0.9
BACKGROUND_INCIDENT_RATE = 0.005  # per service and day, not caused by a change


@dataclass(frozen=True)
class Service:
    index: int
    name: str
    team: int
    profile: Profile
    deploys: bool = True
    in_catalog: bool = True
    monorepo_slot: int | None = None  # position in acme/mono; None: a repository of its own
    monorepo_folder: str | None = None  # its folder there; None: the repository root

    @property
    def repository(self) -> str:
        return MONOREPO if self.monorepo_slot is not None else f"{ORG}/{self.name}"

    @property
    def entity_ref(self) -> str:
        return f"component:default/{self.name}"

    @property
    def pagerduty_id(self) -> str:
        return "P" + hashlib.sha1(self.name.encode()).hexdigest()[:6].upper()


@dataclass(frozen=True)
class Organisation:
    seed: int
    teams: int
    services: int
    end: date  # last day with events (inclusive)
    days: int

    @property
    def start(self) -> date:
        return self.end - timedelta(days=self.days - 1)

    def team_ref(self, team: int) -> str:
        return f"group:default/{self.team_name(team)}"

    def team_name(self, team: int) -> str:
        word = _TEAM_WORDS[team % len(_TEAM_WORDS)]
        return word if team < len(_TEAM_WORDS) else f"{word}-{team // len(_TEAM_WORDS) + 1}"

    def departments(self) -> int:
        return max(1, math.ceil(self.teams / 4))

    def department_of(self, team: int) -> int:
        return team % self.departments()

    def department_ref(self, dept: int) -> str:
        return f"group:default/department-{dept + 1}"

    def members(self, team: int) -> int:
        # Team 1 stays below the default k=5 so its survey results are suppressed.
        return 3 if team == 1 else 5 + (team * 7 + self.seed) % 5

    def user_ref(self, team: int, member: int) -> str:
        return f"user:default/{self.team_name(team)}-dev{member + 1}"

    @property
    def service_list(self) -> tuple[Service, ...]:
        return _services(self.seed, self.teams, self.services)


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _sha(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()


@lru_cache(maxsize=16)
def _services(seed: int, teams: int, count: int) -> tuple[Service, ...]:
    rng = _rng(seed, "services")
    services = []
    for i in range(count):
        word = _WORDS[i % len(_WORDS)]
        suffix = _SUFFIX[(i // len(_WORDS)) % len(_SUFFIX)]
        round_ = i // (len(_WORDS) * len(_SUFFIX))
        name = f"{word}-{suffix}" + (f"-{round_ + 1}" if round_ else "")
        profile = PROFILES[rng.randrange(len(PROFILES))] if i > 1 else PROFILES[i]
        services.append(Service(i, name, i % teams, profile))
    # The last service is a library: PRs, never deployed. The one before lives in a
    # repository the catalog does not know.
    if count >= 4:
        last = services[-1]
        services[-1] = Service(last.index, last.name.replace("-", "-lib-", 1), last.team, last.profile, deploys=False)
        unknown = services[-2]
        services[-2] = Service(unknown.index, f"legacy-{unknown.name}", unknown.team, unknown.profile, in_catalog=False)
    if count >= MONOREPO_MIN_SERVICES:
        for slot, i in enumerate(MONOREPO_SERVICES):
            svc = services[i]
            folder = f"services/{svc.name}" if slot < len(MONOREPO_SERVICES) - 1 else None
            services[i] = Service(svc.index, svc.name, svc.team, svc.profile,
                                  monorepo_slot=slot, monorepo_folder=folder)
    return tuple(services)


def _at(day: date, seconds: float) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=seconds)


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth for small lambda; the rates here stay below ~10.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass(frozen=True)
class _PR:
    number: int
    merged_at: datetime
    merge_sha: str
    head_sha: str
    squash: bool


# Each day's events are generated once per (organisation, day) for every service and kept
# for the few days that need them again: a deploy ships PRs of up to 3 days before, and
# incidents follow deploys of the day before. Eight days bound the memory whatever the
# history's length.
_DAYS_CACHED = 8


@lru_cache(maxsize=_DAYS_CACHED)
def _prs_by_service(org: Organisation, day: date) -> tuple[tuple[tuple[_PR, PullRequest], ...], ...]:
    return tuple(_generate_prs(org, svc, day) for svc in org.service_list)


def _prs_of_day(org: Organisation, svc: Service, day: date) -> tuple[tuple[_PR, PullRequest], ...]:
    return _prs_by_service(org, day)[svc.index]


def _generate_prs(org: Organisation, svc: Service, day: date) -> tuple[tuple[_PR, PullRequest], ...]:
    rng = _rng(org.seed, "prs", svc.index, day)
    lam = 2 * svc.profile.deploys_per_day + 0.1 if svc.deploys else 1.0
    count = _poisson(rng, lam)
    out = []
    day_no = (day - EPOCH).days
    merge_times = sorted(rng.uniform(7 * 3600, 19 * 3600) for _ in range(count))
    for i, merge_s in enumerate(merge_times):
        merged = _at(day, merge_s)
        review_wait = timedelta(hours=rng.lognormvariate(math.log(max(svc.profile.lead_hours / 8, 0.3)), 0.8))
        review = timedelta(hours=rng.lognormvariate(math.log(max(svc.profile.lead_hours / 6, 0.2)), 0.7))
        coding = timedelta(hours=rng.lognormvariate(math.log(max(svc.profile.lead_hours / 3, 0.5)), 0.9))
        first_review = merged - review
        opened = first_review - review_wait
        first_commit = opened - coding
        reviewed = rng.random() > 0.08
        number = day_no * 64 + i + 1
        if svc.monorepo_slot is not None:  # numbers are the repository's: one series per service
            number = number * len(MONOREPO_SERVICES) + svc.monorepo_slot
        squash = rng.random() < 0.35
        head = _sha(org.seed, svc.name, number, "head")
        merge_sha = _sha(org.seed, svc.name, number, "merge")
        author_team = svc.team if rng.random() < 0.9 else (svc.team + 1) % org.teams
        pr = PullRequest(
            source=SOURCE,
            repository=svc.repository,
            number=number,
            opened_at=opened,
            merged_at=merged,
            first_commit_at=first_commit,
            first_review_at=first_review if reviewed else None,
            first_reviewer=org.user_ref((svc.team + 1) % org.teams if rng.random() < 0.2 else svc.team, rng.randrange(3)) if reviewed else None,
            merge_commit_sha=merge_sha,
            head_sha=head,
            title=f"Change {number} in {svc.name}",
            author=org.user_ref(author_team, rng.randrange(org.members(author_team))),
            base_branch="main",
            additions=int(rng.lognormvariate(4 + svc.profile.lead_hours / 200, 1.0)),
            deletions=int(rng.lognormvariate(3, 1.0)),
        )
        out.append((_PR(number, merged, merge_sha, head, squash), pr))
    return tuple(out)


def _monorepo_files(org: Organisation, svc: Service, pr: PullRequest) -> PullRequestFiles:
    """The files a monorepo PR changed: a foldered service's PRs change its folder (about
    one in eight also a sibling's folder, a PR of both); the root service's only root files."""
    rng = _rng(org.seed, "files", pr.number)
    if svc.monorepo_folder is None:
        paths = ["README.md", "tools/ci/pipeline.yaml", "docs/architecture.md"][: 1 + rng.randrange(3)]
    else:
        paths = [f"{svc.monorepo_folder}/src/module_{k}.py" for k in range(1 + rng.randrange(6))]
        siblings = [s.monorepo_folder for s in org.service_list
                    if s.monorepo_folder and s.monorepo_folder != svc.monorepo_folder]
        if siblings and rng.random() < 0.125:
            paths.append(f"{rng.choice(siblings)}/src/shared_types.py")
    return PullRequestFiles(SOURCE, pr.repository, pr.number, tuple(paths), len(paths))


def _merged_at(pr: _PR) -> datetime:
    return pr.merged_at


@dataclass(frozen=True)
class _Deploy:
    external_id: str
    finished_at: datetime
    sha: str
    production: bool
    failed: bool


@lru_cache(maxsize=_DAYS_CACHED)
def _deploys_by_service(org: Organisation, day: date) -> tuple[tuple[_Deploy, ...], ...]:
    return tuple(_generate_deploys(org, svc, day) for svc in org.service_list)


def _deploys_of_day(org: Organisation, svc: Service, day: date) -> tuple[_Deploy, ...]:
    return _deploys_by_service(org, day)[svc.index]


def _generate_deploys(org: Organisation, svc: Service, day: date) -> tuple[_Deploy, ...]:
    if not svc.deploys:
        return ()
    rng = _rng(org.seed, "deploys", svc.index, day)
    weekend = day.weekday() >= 5
    lam = svc.profile.deploys_per_day * (WEEKEND_DEPLOY_FACTOR if weekend else 1.0)
    count = _poisson(rng, lam)
    times = sorted(rng.uniform(8 * 3600, 20 * 3600) for _ in range(count))
    recent = [pr for d in range(3, -1, -1) for pr, _ in _prs_of_day(org, svc, day - timedelta(days=d))]
    out: list[_Deploy] = []
    shipped_upto = -1
    for i, t in enumerate(times):
        finished = _at(day, t)
        # recent is in merge order: the last PR merged 10 minutes before the deploy.
        last_merged = bisect_right(recent, finished - timedelta(minutes=10), key=_merged_at) - 1
        if last_merged >= 0 and last_merged > shipped_upto and rng.random() < 0.9:
            pr = recent[last_merged]
            shipped_upto = last_merged
            sha = pr.head_sha if pr.squash else pr.merge_sha
        else:
            sha = _sha(org.seed, svc.name, day, i, "redeploy")  # ships no PR by SHA
        ext = f"{svc.name}-{day.isoformat()}-{i}"
        # A staging deploy of the same commit shortly before, sometimes failing first.
        out.append(_Deploy(ext + "-stg", finished - timedelta(minutes=40), sha, False, rng.random() < 0.1))
        if rng.random() < 0.08:
            out.append(_Deploy(ext + "-fail", finished - timedelta(minutes=20), sha, True, True))
        out.append(_Deploy(ext, finished, sha, True, False))
    return tuple(out)


def _incidents_of_day(org: Organisation, svc: Service, day: date) -> list[Incident]:
    """Incidents opened on ``day`` on ``svc``: deploy-induced ones (from deploys of the day
    and the day before), plus background ones."""
    out = []
    services = org.service_list
    for d in (day - timedelta(days=1), day):
        for dep in _deploys_of_day(org, svc, d):
            if not dep.production or dep.failed:
                continue
            rng = _rng(org.seed, "incident", dep.external_id)
            if rng.random() >= svc.profile.failure_prob:
                continue
            opened = dep.finished_at + timedelta(minutes=rng.uniform(5, 20 * 60))
            if opened.date() != day:
                continue
            out.append(_incident(org, svc, rng, f"inc-{dep.external_id}", opened,
                                 caused=True if rng.random() < 0.75 else None, services=services))
    rng = _rng(org.seed, "bg-incident", svc.index, day)
    if rng.random() < BACKGROUND_INCIDENT_RATE:
        opened = _at(day, rng.uniform(0, 86_399))
        out.append(_incident(org, svc, rng, f"inc-bg-{svc.name}-{day.isoformat()}", opened, caused=False, services=services))
    return out


def _incident(org, svc, rng, ext_id, opened, caused, services) -> Incident:
    affected = [("pagerduty_service", svc.pagerduty_id)]
    if rng.random() < 0.1 and len(services) > 2:
        other = services[(svc.index + 1) % (len(services) - 2)]
        if other.index != svc.index:
            affected.append(("pagerduty_service", other.pagerduty_id))
    minutes = rng.lognormvariate(math.log(svc.profile.restore_minutes), 0.9)
    resolved = opened + timedelta(minutes=max(minutes, 2))
    now = datetime.now(UTC)
    if (org.end - opened.date()).days < 2 and rng.random() < 0.4:
        resolved = None  # still open
    elif resolved > now:
        resolved = None
    return Incident(
        source=SOURCE, external_id=ext_id, opened_at=opened, affected=tuple(affected),
        resolved_at=resolved, caused_by_change=caused, title=f"{svc.name} degraded",
    )


def catalog(org: Organisation) -> list[CatalogEntity | GroupMembership]:
    out: list[CatalogEntity | GroupMembership] = [
        CatalogEntity(SOURCE, "group:default/engineering", "group", "default", "engineering", "Engineering", spec_type="organization")
    ]
    for dept in range(org.departments()):
        ref = org.department_ref(dept)
        out.append(CatalogEntity(SOURCE, ref, "group", "default", ref.split("/")[1], f"Department {dept + 1}",
                                 parent_ref="group:default/engineering", spec_type="department"))
    for team in range(org.teams):
        out.append(CatalogEntity(SOURCE, org.team_ref(team), "group", "default", org.team_name(team),
                                 f"Team {org.team_name(team).title()}",
                                 parent_ref=org.department_ref(org.department_of(team)), spec_type="team"))
        for member in range(org.members(team)):
            user = org.user_ref(team, member)
            out.append(CatalogEntity(SOURCE, user, "user", "default", user.split("/")[1]))
            out.append(GroupMembership(SOURCE, org.team_ref(team), user))
    out += trunk_catalog(org)
    for svc in org.service_list:
        if not svc.in_catalog:
            continue
        annotations = {
            "github.com/project-slug": svc.repository,
            "pagerduty.com/service-id": svc.pagerduty_id,
            "argocd/app-name": svc.name,
        }
        if svc.monorepo_slot is not None:
            annotations["backstage.io/source-location"] = (
                f"url:https://github.com/{svc.repository}/tree/main/{svc.monorepo_folder or ''}"
            )
        out.append(CatalogEntity(SOURCE, svc.entity_ref, "component", "default", svc.name,
                                 owner_ref=org.team_ref(svc.team), spec_type="library" if not svc.deploys else "service",
                                 lifecycle="production", annotations=annotations))
    return out


def survey_responses(org: Organisation, day: date, pseudonymise) -> list[SurveyResponse]:
    """Monthly pulse surveys: open for the first 10 days of each month, so every survey
    but the first has a previous one to compare with."""
    month_start = date(day.year, day.month, 1)
    if (day - month_start).days >= 10:
        return []
    survey_id = f"pulse-{day.year}-{day.month:02d}"
    out = []
    for team in range(org.teams):
        for member in range(org.members(team)):
            rng = _rng(org.seed, "survey", survey_id, team, member)
            if rng.random() > 0.8:
                continue  # did not answer
            answer_day = month_start + timedelta(days=rng.randrange(10))
            answers = [answer_day]
            if rng.random() < 0.1:
                answers.append(min(answer_day + timedelta(days=2), month_start + timedelta(days=9)))  # changed their mind
            for n, answer in enumerate(answers):
                if answer != day:
                    continue
                base = 3 + (team % 3 - 1) * 0.7
                sat: object = max(1, min(5, round(rng.gauss(base, 0.9))))
                flow: object = max(1, min(5, round(rng.gauss(base - 0.3, 1.0))))
                if rng.random() < 0.03:
                    sat = rng.choice([0, 6, 3.5, "five"])
                out.append(SurveyResponse(
                    source=SOURCE, survey_id=survey_id, respondent=pseudonymise(org.user_ref(team, member)),
                    group_ref=org.team_ref(team), submitted_at=_at(answer, rng.uniform(8 * 3600, 18 * 3600) + n),
                    satisfaction=sat, flow_state=flow,
                    blockers_text=rng.choice([None, "flaky CI", "slow reviews", "unclear priorities"]),
                ))
    return out


def events_of_day(org: Organisation, day: date, pseudonymise):
    """Every record of one UTC day: deployments, merged PRs, incidents opened, survey answers."""
    if not org.start <= day <= org.end:
        return
    for svc in org.service_list:
        for _, pr in _prs_of_day(org, svc, day):
            yield pr
            if svc.monorepo_slot is not None:
                yield _monorepo_files(org, svc, pr)
        # A monorepo's services deploy as ArgoCD apps of their own (the repository names all three).
        key_type, key = ("argocd_app", svc.name) if svc.monorepo_slot is not None else ("github_repo", svc.repository)
        for dep in _deploys_of_day(org, svc, day):
            yield Deployment(
                source=SOURCE, external_id=dep.external_id, service_key_type=key_type,
                service_key=key, repository=svc.repository,
                environment="production" if dep.production else "staging",
                commit_sha=dep.sha, started_at=dep.finished_at - timedelta(minutes=6),
                finished_at=dep.finished_at, failed=dep.failed,
            )
        yield from _incidents_of_day(org, svc, day)
    yield from trunk_events_of_day(org, day)
    yield from survey_responses(org, day, pseudonymise)


# -- the trunk-based team ---------------------------------------------------------------

TRUNK_SERVICE_NAMES = ("feature-flags", "edge-router")
TRUNK_PROFILE = Profile(3.0, 3, 0.04, 45)
TRUNK_COMMITS_PER_DAY = 7.0


def trunk_team(org: Organisation) -> int:
    """The trunk-based team's number: the one after the teams the organisation asks for."""
    return org.teams


def trunk_services(org: Organisation) -> tuple[Service, ...]:
    team = trunk_team(org)
    return tuple(
        Service(org.services + i, name, team, TRUNK_PROFILE)
        for i, name in enumerate(TRUNK_SERVICE_NAMES)
    )


def trunk_catalog(org: Organisation) -> list[CatalogEntity | GroupMembership]:
    """The trunk-based team, its members and its services."""
    team = trunk_team(org)
    out: list[CatalogEntity | GroupMembership] = [
        CatalogEntity(SOURCE, org.team_ref(team), "group", "default", org.team_name(team),
                      f"Team {org.team_name(team).title()}",
                      parent_ref=org.department_ref(org.department_of(team)), spec_type="team")
    ]
    for member in range(org.members(team)):
        user = org.user_ref(team, member)
        out.append(CatalogEntity(SOURCE, user, "user", "default", user.split("/")[1]))
        out.append(GroupMembership(SOURCE, org.team_ref(team), user))
    for svc in trunk_services(org):
        annotations = {"github.com/project-slug": svc.repository, "pagerduty.com/service-id": svc.pagerduty_id}
        out.append(CatalogEntity(SOURCE, svc.entity_ref, "component", "default", svc.name,
                                 owner_ref=org.team_ref(team), spec_type="service",
                                 lifecycle="production", annotations=annotations))
    return out


def _trunk_day(org: Organisation, svc: Service, day: date) -> tuple[list[DirectChange], list[Deployment]]:
    """A day of a trunk-based service: small commits pushed to main through working
    hours, each authored an hour or two before it is pushed, and deploys that ship the
    latest commit pushed at least ten minutes earlier (its SHA); the commits before it
    in the same deploy are shipped by that deploy as the next one at or after them."""
    rng = _rng(org.seed, "trunk", svc.index, day)
    commits = []
    for i, at in enumerate(sorted(rng.uniform(8 * 3600, 19 * 3600) for _ in range(_poisson(rng, TRUNK_COMMITS_PER_DAY)))):
        committed = _at(day, at)
        authored = committed - timedelta(hours=rng.lognormvariate(math.log(TRUNK_PROFILE.lead_hours / 2), 0.7))
        commits.append(DirectChange(SOURCE, svc.repository, _sha(org.seed, svc.name, day, i, "push"), authored, committed))
    deploys = []
    weekend = day.weekday() >= 5
    times = sorted(rng.uniform(9 * 3600, 21 * 3600) for _ in range(_poisson(rng, TRUNK_PROFILE.deploys_per_day * (0.3 if weekend else 1.0))))
    for i, at in enumerate(times):
        finished = _at(day, at)
        pushed = [c for c in commits if c.committed_at <= finished - timedelta(minutes=10)]
        sha = pushed[-1].sha if pushed else _sha(org.seed, svc.name, day, i, "redeploy")
        deploys.append(Deployment(
            source=SOURCE, external_id=f"{svc.name}-{day.isoformat()}-{i}", service_key_type="github_repo",
            service_key=svc.repository, repository=svc.repository, environment="production",
            commit_sha=sha, started_at=finished - timedelta(minutes=4), finished_at=finished,
        ))
    return commits, deploys


def trunk_events_of_day(org: Organisation, day: date) -> list[DirectChange | Deployment | Incident]:
    """The trunk-based team's records of one UTC day: direct changes, production
    deploys, and the incidents deploys of the day and the day before caused."""
    out: list[DirectChange | Deployment | Incident] = []
    for svc in trunk_services(org):
        commits, deploys = _trunk_day(org, svc, day)
        out += commits + deploys
        for previous in (day - timedelta(days=1), day):
            for dep in _trunk_day(org, svc, previous)[1]:
                rng = _rng(org.seed, "incident", dep.external_id)
                opened = dep.finished_at + timedelta(minutes=rng.uniform(5, 12 * 60))
                if rng.random() < svc.profile.failure_prob and opened.date() == day:
                    out.append(_incident(org, svc, rng, f"inc-{dep.external_id}", opened, caused=True, services=(svc,)))
    return out
