"""The model registry on a Storage: immutable versions closed by a manifest, and the champion alias as a
create-only sequence of objects (the highest is the champion, the sequence is the history).

Layout under ``<model>/``:
    versions/<id>/<files>            weights, config, metrics, lineage, model card, decision
    versions/<id>/MANIFEST.json      sha256 of every file; written last: without it a version is incomplete
    aliases/champion/<seq>.json      one object per promotion or rollback, created with If-None-Match: *
    events/conflicts/<id>.json       a promotion that lost the race, kept for the audit trail

The data watcher's record of emitted events shares the storage but not this class: see ``event_ledger``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from headstart.ground.errors import ConfigError
from headstart.ground.params import RegistryParams
from headstart.ground.run_folder import DECISION
from headstart.library.registry.errors import DamagedManifest, PromotionConflict, RegistryError
from headstart.library.registry.pulling import pull_version
from headstart.library.registry.signing import SIGNATURE, sign, signed_by
from headstart.library.storage.backends import ObjectExists, ObjectNotFound, Storage, open_storage

log = logging.getLogger(__name__)
MANIFEST = "MANIFEST.json"
CHAMPION = "champion"


@dataclass
class VersionScan:
    """Versions with a manifest: those verified (oldest first) and those refused, with why."""

    verified: list[dict] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # version -> the reason, as verified_manifest says it
    damaged: set[str] = field(default_factory=set)  # of those refused: manifests that are not manifests at all


@dataclass(frozen=True)
class AliasRecord:
    """One move of the champion alias."""

    seq: int
    version: str
    action: str  # promote | rollback | manual-promote
    at: str
    reason: str
    manifest_sha256: str | None = None  # the promoted version's manifest, as it was when promoted
    judged_against_seq: int | None = None  # promote: the alias entry the gate judged against (this is the next)
    signature: str | None = None  # HMAC-SHA256 when the registry signs (registry.signing_key_env)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FLAT_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")  # no leading dot: no ., .., or hidden marker files
VERSION_ID = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")  # what new_version_id makes
ALIAS_ENTRY = re.compile(r"^\d{8}\.json$")


def check_file_names(model: str, version: str, names: list[str]) -> None:
    """Refuse a manifest naming anything but plain file names (``../x``, ``/abs/x``, ``a/b``): a pull writes each
    name into its own folder and nowhere else."""
    bad = [n for n in names if not isinstance(n, str) or not FLAT_NAME.match(n)]
    lowered = [n.lower() for n in names if isinstance(n, str)]
    bad += sorted({n for n in names if isinstance(n, str) and lowered.count(n.lower()) > 1})  # case-folding clash
    if bad:
        raise RegistryError(f"{model}/{version}: the manifest names {bad}, not plain file names; version refused")


def new_version_id() -> str:
    """Sortable by creation time and unique: ``<UTC time to the microsecond>-<8 hex>``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def version_created_at(version: str) -> datetime:
    """A version's creation time, from its id (``new_version_id`` puts it there)."""
    return datetime.strptime(version.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)


def registry_time(text: str) -> datetime:
    """A time the registry wrote (manifest ``created``, alias ``at``): UTC; one without its offset (written by
    hand, or by older code) is read as UTC, never as local time."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Registry:
    """One model's versions and champion alias on a storage backend."""

    def __init__(self, storage: Storage, model_name: str, signing_key: bytes | None = None) -> None:
        """With ``signing_key``, manifests and alias entries written are signed, and unsigned or wrongly signed
        ones read are refused."""
        self.storage, self.model, self.signing_key = storage, model_name, signing_key

    def _key(self, *parts: str) -> str:
        return "/".join((self.model, *parts))

    # versions ---------------------------------------------------------------------------------------------
    def register(self, files: dict[str, bytes], summary: dict, version: str | None = None) -> str:
        """Upload a new immutable version; the manifest (sha256 of every file, plus ``summary``) goes last.

        ``version`` (an id from :func:`new_version_id` chosen before a first attempt) makes a retry complete that
        version: files already there with our bytes count as written, and a manifest already there listing the
        same files means the version is done. Other bytes under that id raise ObjectExists.
        """
        version = version or new_version_id()
        if not VERSION_ID.match(version):
            raise RegistryError(f"{self.model}: {version!r} is not a version id")
        check_file_names(self.model, version, list(files))  # a name no pull would accept is never registered
        for name, data in sorted(files.items()):
            self.storage.put(self._key("versions", version, name), data, create_only=True)
        digests = {name: _sha256(data) for name, data in sorted(files.items())}
        manifest = {
            "version": version,
            "model": self.model,
            "created": _now(),
            "files": digests,
            **summary,
        }
        if self.signing_key is not None:
            manifest[SIGNATURE] = sign(manifest, self.signing_key)
        try:
            self.storage.put(
                self._key("versions", version, MANIFEST), json.dumps(manifest, indent=2).encode(), create_only=True
            )
        except ObjectExists:  # an earlier attempt finished this version: done if it holds exactly these files
            if self.verified_manifest(version)[0]["files"] != digests:
                raise
        return version

    def versions(self) -> list[dict]:
        """Verified manifests of complete versions, oldest first, each with its own sha256 added as
        ``manifest_sha256``. A version without its manifest is never listed; one whose manifest fails
        :meth:`verified_manifest` (damaged, unsigned in a signing registry, replaced after promotion) is left out
        with a warning naming it (:meth:`scan_versions` says why): every reader sees what a pull would accept."""
        return self.scan_versions().verified

    def scan_versions(self) -> VersionScan:
        """Every version with a manifest, verified (one read of the alias history for all of them)."""
        keys = self.storage.list(self._key("versions") + "/")
        ids = sorted({k.split("/")[-2] for k in keys if k.endswith(f"/{MANIFEST}") and k.count("/") == 3})
        history = self.history()
        scan = VersionScan()
        for version in (v for v in ids if VERSION_ID.match(v)):  # anything else under versions/ is not a version
            try:
                data = self._manifest_bytes(version)
                manifest, digest = self._verified(version, data, history)
            except ObjectNotFound:  # removed meanwhile (gc)
                continue
            except RegistryError as exc:
                log.warning("%s; not listed", exc)
                scan.refused[version] = str(exc)
                if isinstance(exc, DamagedManifest):
                    scan.damaged.add(version)
                continue
            scan.verified.append({**manifest, "manifest_sha256": digest})
        return scan

    def manifest(self, version: str) -> dict:
        """The manifest of a complete version."""
        return json.loads(self._manifest_bytes(version))

    def _manifest_bytes(self, version: str) -> bytes:
        if not isinstance(version, str) or not VERSION_ID.match(version):
            raise RegistryError(f"{self.model}: {version!r} is not a version id; see `headstart registry ls`")
        try:
            return self.storage.get(self._key("versions", version, MANIFEST))
        except ObjectNotFound:
            raise RegistryError(f"{self.model}: no complete version {version!r}; see `headstart registry ls`") from None

    def verified_manifest(self, version: str) -> tuple[dict, str]:
        """The manifest and its sha256, refused when it names anything but plain file names or when it differs
        from the manifest recorded by an alias entry that promoted this version (replaced after promotion)."""
        return self._verified(version, self._manifest_bytes(version), self.history())

    def _verified(self, version: str, data: bytes, history: list[AliasRecord]) -> tuple[dict, str]:
        digest = _sha256(data)
        try:
            manifest = json.loads(data)
            files = manifest["files"]
            if not isinstance(files, dict) or not all(isinstance(h, str) for h in files.values()):
                raise TypeError("files is not a mapping of names to sha256")
        except (ValueError, TypeError, KeyError) as exc:
            raise DamagedManifest(f"{self.model}/{version}: MANIFEST.json is not a manifest ({exc}); refused") from None
        if manifest.get("model") != self.model or manifest.get("version") != version:
            raise RegistryError(
                f"{self.model}/{version}: MANIFEST.json describes {manifest.get('model')}/{manifest.get('version')}; "
                "refused (copied from elsewhere?)"
            )
        if self.signing_key is not None and not signed_by(manifest, self.signing_key):
            raise RegistryError(f"{self.model}/{version}: MANIFEST.json is unsigned or wrongly signed; version refused")
        check_file_names(self.model, version, list(files))
        recorded = {r.manifest_sha256 for r in history if r.version == version and r.manifest_sha256}
        if recorded and recorded != {digest}:
            raise RegistryError(
                f"{self.model}/{version}: MANIFEST.json differs from the one recorded when it was promoted "
                f"(sha256 {digest[:12]} vs {sorted(recorded)[0][:12]}); version refused"
            )
        return manifest, digest

    def fetch(self, version: str) -> tuple[dict, str, dict[str, bytes]]:
        """A version's verified manifest, its digest and every file, each checked against its sha256."""
        manifest, digest = self.verified_manifest(version)
        files = {}
        for name, expected in manifest["files"].items():
            data = self.storage.get(self._key("versions", version, name))
            if _sha256(data) != expected:
                raise RegistryError(f"{self.model}/{version}/{name}: sha256 does not match the manifest; refused")
            files[name] = data
        return manifest, digest, files

    def read_file(self, version: str, name: str) -> bytes | None:
        """One file of a version, checked against its verified manifest; None when the version lists no such
        file (registered before it existed)."""
        manifest, _ = self.verified_manifest(version)
        expected = manifest["files"].get(name)
        if expected is None:
            return None
        data = self.storage.get(self._key("versions", version, name))
        if _sha256(data) != expected:
            raise RegistryError(f"{self.model}/{version}/{name}: sha256 does not match the manifest; refused")
        return data

    def decision(self, version: str) -> dict:
        """The gate decision stored with a version."""
        return json.loads(self.storage.get(self._key("versions", version, DECISION)))

    def resolve(self, ref: str) -> str:
        """A version id, or ``champion``."""
        if ref != CHAMPION:
            self.manifest(ref)
            return ref
        current = self.champion()
        if current is None:
            raise RegistryError(f"{self.model}: there is no champion yet")
        return current

    def pull(self, ref: str, dest: Path, full_check: bool = True) -> Path:
        """Download a version into ``dest`` (see :func:`headstart.library.registry.pulling.pull_version`)."""
        return pull_version(self, self.resolve(ref), dest, full_check)

    # champion alias ---------------------------------------------------------------------------------------
    def history(self) -> list[AliasRecord]:
        """Every move of the champion alias, oldest first. Objects under ``aliases/`` that are not alias entries
        (a stray upload, a half-edited file) are skipped with a warning: see :meth:`stray_aliases`."""
        return self._read_aliases()[0]

    def stray_aliases(self) -> list[str]:
        """Keys under the alias folder that are not well-formed alias entries (reported, never used)."""
        return self._read_aliases()[1]

    def _read_aliases(self) -> tuple[list[AliasRecord], list[str]]:
        """Entries by number, and keys under the alias folder that are not entries (notes, sub-folders: skipped,
        reported). An entry-named object that is not a valid entry (unreadable, misnumbered, unsigned when the
        registry signs) is damage, not noise: a RegistryError, so that nothing is promoted or pulled on a history
        that cannot be trusted."""
        prefix = self._key("aliases", CHAMPION) + "/"
        records, stray = [], []
        for key in self.storage.list(prefix):
            name = key[len(prefix) :]
            if not ALIAS_ENTRY.match(name):
                log.warning("%s: not an alias entry; skipped", key)
                stray.append(key)
                continue
            try:
                entry = json.loads(self.storage.get(key))
                record = AliasRecord(**entry)
                if name != f"{record.seq:08d}.json" or not VERSION_ID.match(record.version):
                    raise ValueError(f"it says entry #{record.seq} for version {record.version!r}")
                if self.signing_key is not None and not signed_by({"model": self.model, **entry}, self.signing_key):
                    raise ValueError("unsigned or wrongly signed")
            except (ValueError, TypeError) as exc:  # JSON errors are ValueErrors
                raise RegistryError(
                    f"{key}: not a valid alias entry ({exc}); the champion history is damaged and cannot be trusted "
                    "until that object is repaired or removed"
                ) from None
            records.append(record)
        return sorted(records, key=lambda r: r.seq), stray

    def champion(self) -> str | None:
        """The version named by the highest alias object."""
        records = self.history()
        return records[-1].version if records else None

    def set_champion(self, version: str, action: str, reason: str) -> AliasRecord:
        """Move the alias: :meth:`next_alias` then :meth:`commit_alias`."""
        return self.commit_alias(self.next_alias(version, action, reason))

    def next_alias(self, version: str, action: str, reason: str) -> AliasRecord:
        """The alias record that would come next (``latest + 1``); nothing is written."""
        digest = self.verified_manifest(version)[1]  # only complete, untampered versions can become champion
        records = self.history()
        return AliasRecord(records[-1].seq + 1 if records else 1, version, action, _now(), reason, digest)

    def current_seq(self) -> int:
        """The number of the latest alias entry (0: there has been no champion)."""
        records = self.history()
        return records[-1].seq if records else 0

    def promote_after(self, version: str, judged_seq: int, reason: str) -> AliasRecord:
        """Make ``version`` champion as exactly the entry after ``judged_seq``, the one the gate judged it
        against: if the alias moved since (a manual promote, a rollback, another server), PromotionConflict.

        Idempotent: when that entry already names ``version`` judged against ``judged_seq`` (a retried promote
        whose first attempt landed), it is returned as it is.
        """
        landed = [r for r in self.history() if r.seq == judged_seq + 1]
        if landed and (landed[0].version, landed[0].action, landed[0].judged_against_seq) == (
            version,
            "promote",
            judged_seq,
        ):
            return landed[0]
        digest = self.verified_manifest(version)[1]
        record = AliasRecord(judged_seq + 1, version, "promote", _now(), reason, digest, judged_seq)
        return self.commit_alias(record)

    def commit_alias(self, record: AliasRecord) -> AliasRecord:
        """Create the alias object with If-None-Match; if its number was taken meanwhile, record the conflict
        and raise PromotionConflict (never retried into the next number: that would hide the race)."""
        version = record.version
        if self.signing_key is not None:
            record = replace(record, signature=sign({"model": self.model, **asdict(record)}, self.signing_key))
        try:
            self.storage.put(
                self._key("aliases", CHAMPION, f"{record.seq:08d}.json"),
                json.dumps(asdict(record)).encode(),
                create_only=True,
            )
        except ObjectExists:
            event = {"attempt": asdict(record), "outcome": "lost: alias sequence number already taken"}
            self.storage.put(
                self._key("events", "conflicts", f"{new_version_id()}.json"),
                json.dumps(event).encode(),
                create_only=True,
            )
            raise PromotionConflict(
                f"{self.model}: champion alias #{record.seq} was taken by another promotion or rollback; {version} "
                "was not promoted (conflict recorded)"
            ) from None
        return record

    def conflicts(self) -> list[dict]:
        """Promotions that lost a race, oldest first."""
        return [json.loads(self.storage.get(k)) for k in self.storage.list(self._key("events", "conflicts") + "/")]

    def rollback(self, to: str | None = None) -> AliasRecord:
        """Make ``to`` (default: the champion before the current one) champion again, as a new alias object."""
        records = self.history()
        if not records:
            raise RegistryError(f"{self.model}: nothing to roll back, there is no champion")
        current = records[-1].version
        if to is None:
            earlier = [r.version for r in records if r.version != current]
            if not earlier:
                raise RegistryError(f"{self.model}: {current} is the only champion there has been; nothing to restore")
            to = earlier[-1]
        return self.set_champion(to, "rollback", f"rollback from {current}")


def open_registry(params: RegistryParams) -> Registry:
    """The registry named in params (``registry.uri``, ``registry.model_name``)."""
    key = None
    if params.signing_key_env:
        secret = os.environ.get(params.signing_key_env)
        if not secret:
            raise ConfigError(
                f"registry.signing_key_env names {params.signing_key_env}, which is not set: export the signing key "
                "there (it is never read from a file or logged)"
            )
        key = secret.encode()
    return Registry(open_storage(params.uri), params.model_name, key)
