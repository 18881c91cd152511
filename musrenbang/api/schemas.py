"""Request bodies of the API (pydantic), turned into the workflows' requests."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from musrenbang.domain.text import first_bad_text
from musrenbang.workflows.contracts import BeritaAcara


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Body(Strict):
    """A whole request body: before any field is read, every text nested in it (keys and
    values, `changes` and `berita_acara` too) is checked for what the log cannot hold."""

    @model_validator(mode="before")
    @classmethod
    def _texts_the_log_can_hold(cls, data: Any) -> Any:
        found = first_bad_text(data)
        if found:
            where, problem = found
            raise ValueError(f"{where or 'the body'} {problem}")
        return data


Rupiah = Annotated[StrictInt, Field(ge=0, le=10**15)]
ReminderHour = Annotated[StrictInt, Field(ge=1, le=720)]
DeadlineText = Annotated[str, Field(min_length=10, max_length=40)]


class CycleCreate(Body):
    region: str = Field(pattern=r"^\d{2}\.\d{2}$", examples=["36.71"])
    year: StrictInt = Field(ge=2024, le=2100, examples=[2028])
    template: Literal["default", "tanpa-kelurahan", "sipd"] | None = Field(
        default=None, description="a stage template, replacing the profile's stage graph"
    )
    profile: Annotated[str, Field(pattern=r"^\d{2}\.\d{2}$")] | dict[str, Any] | None = Field(
        default=None,
        description='the region profile: a shipped region\'s code ("36.71", "36.74"), or an'
        ' object with at least "opds": [{"slug", "name", "bidang": [...]}] and optionally'
        ' "stages", "pokir_stage", "pagu", "reason_codes", "calendar", "nomenclature" or'
        ' "sub_kegiatan" (README, "Region profiles"); unset: the region\'s own, else the default',
        examples=["36.71"],
    )
    deadlines: dict[str, DeadlineText] = Field(
        default_factory=dict,
        max_length=10,
        description="stage slug to a day (YYYY-MM-DD: the end of that working day, WIB) or a"
        " moment with a zone (YYYY-MM-DDTHH:MM:SS+07:00); every key a stage of the template",
        examples=[{"kelurahan": "2027-01-31", "kecamatan": "2027-02-27T16:00:00+07:00"}],
    )
    pokir_deadline: date | None = None
    pagu: dict[str, Rupiah] = Field(
        default_factory=dict, max_length=10, description="stage slug to the pagu per forum"
    )
    reminder_hours: list[ReminderHour] = Field(default_factory=lambda: [72, 24], max_length=10)
    grace_working_days: StrictInt = Field(default=3, ge=0, le=30)
    auto_close_policy: Literal["not_deliberated", "forward"] = "not_deliberated"
    holidays: list[date] = Field(
        default_factory=list,
        max_length=200,
        description="national holidays and cuti bersama for years lokal-id does not cover",
    )


class Draft(Strict):
    # Strict types: a boolean is not a number, a number is not a text.
    model_config = ConfigDict(extra="forbid", strict=True)

    masalah: str = Field(min_length=3, max_length=2000)
    gagasan: str = Field(min_length=3, max_length=4000)
    cost: int = Field(gt=0, le=10**13, description="estimated cost in Rupiah")
    bidang: str = Field(min_length=2, max_length=60)
    volume: float = Field(gt=0, le=10**9)
    satuan: str = Field(min_length=1, max_length=40)
    rt: str | None = Field(default=None, pattern=r"^\d{1,3}$")
    rw: str | None = Field(default=None, pattern=r"^\d{1,3}$")
    alamat: str | None = Field(default=None, max_length=500)
    fisik: bool = True
    opd: str | None = Field(default=None, max_length=60)
    koordinat: list[float] | None = Field(default=None, min_length=2, max_length=2)
    pengusul: str | None = Field(default=None, max_length=200)
    kontak: str | None = Field(
        default=None,
        max_length=254,
        pattern=r"^(\+?[0-9][0-9 -]{6,18}[0-9]|[^@\s]{1,64}@[^@\s]{1,180}\.[A-Za-z]{2,24})$",
        description="the proposer's phone or e-mail, to be told the outcome and its reason;"
        " kept apart from the log (erasable), never shown",
    )
    reference: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="the client's own reference, unique within its cycle; the usulan's id"
        " is assigned by the server",
    )
    proposal_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description="deprecated: `reference`"
    )


class SubmitBody(Body):
    proposals: list[Draft] = Field(min_length=1, max_length=5000)


class PokirBody(Body):
    dapil: str = Field(min_length=1, max_length=100)
    proposals: list[Draft] = Field(min_length=1, max_length=500)


class DecisionBody(Strict):
    model_config = ConfigDict(extra="forbid", strict=True)

    proposal_id: str = Field(min_length=1, max_length=64)
    kind: Literal[
        "accept",
        "revise",
        "reject",
        "defer",
        "merge",
        "prioritize",
        "assign",
        "include",
        "not_accommodated",
    ]
    reason: str | None = Field(default=None, max_length=2000)
    reason_code: str | None = Field(default=None, max_length=60)
    changes: dict[str, Any] = Field(default_factory=dict)
    into: str | None = Field(default=None, max_length=64)
    rank: int | None = Field(default=None, ge=1, le=100000)
    scores: dict[str, Annotated[StrictInt, Field(ge=0, le=5)]] = Field(
        default_factory=dict, max_length=10
    )
    opd_akhir: str | None = Field(default=None, max_length=60)
    sub_kegiatan: str | None = Field(default=None, max_length=40)


class DecideBody(Body):
    decisions: list[DecisionBody] = Field(min_length=1, max_length=10000)


class BeritaAcaraBody(Strict):
    tanggal: date
    tempat: str = Field(min_length=1, max_length=300)
    peserta: int = Field(ge=1, le=100000)
    penandatangan: list[str] = Field(min_length=1, max_length=50)
    catatan: str | None = Field(default=None, max_length=4000)
    perkada: str | None = Field(default=None, max_length=200)

    def request(self) -> BeritaAcara:
        """The workflow's Berita Acara of this body."""
        return BeritaAcara(
            self.tanggal.isoformat(),
            self.tempat,
            self.peserta,
            self.penandatangan,
            self.catatan,
            self.perkada,
        )


class CloseBody(Body):
    berita_acara: BeritaAcaraBody


class DeadlineBody(Body):
    new_deadline: datetime
    reason: str = Field(min_length=3, max_length=1000)
