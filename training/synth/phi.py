"""Made-up identities for the PHI planted in synthetic reports.

Every name, number and date here is invented; the lists mix cultures so that a de-identifier
cannot lean on one naming convention. Phone numbers use the fictional 555-01xx range.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

FEMALE_FIRST = (
    "Priya", "Olga", "Aisha", "Thandiwe", "Lucia", "Mei", "Ingrid", "Fatima", "Yuki", "Chiamaka",
    "Sofia", "Anneliese", "Nadia", "Carmen", "Leilani", "Siobhan", "Hana", "Zeynep", "Ewa", "Amara",
    "Guadalupe", "Aroha", "Kateryna", "Nkechi", "Marisol", "Freya", "Linh", "Soo-ah", "Tahmina", "Rosalind",
)
MALE_FIRST = (
    "Samuel", "Nikolai", "Emeka", "Farid", "Theo", "Olusegun", "Dmitri", "Kenji", "Rafael", "Tariq",
    "Henrik", "Kwabena", "Mateo", "Arjun", "Cormac", "Jae-won", "Bogdan", "Ilias", "Tevita", "Joaquin",
    "Anders", "Ravi", "Yusuf", "Piotr", "Lachlan", "Duc", "Amadou", "Eitan", "Wiremu", "Guillermo",
)
SURNAMES = (
    "Iwasaki", "Stavrou", "Mortensen", "Dunleavy", "Varga", "Quillfeather", "Thibodeaux", "Hollister",
    "Kilbride", "Quenneville", "Okonkwo", "Nakamura", "Bergström", "Haddad", "Castellanos", "Nguyen",
    "Kowalczyk", "Mahlangu", "Papadakis", "O'Sullivan", "Rahman", "Fonoti", "Lindqvist", "Achterberg",
    "Chakraborty", "Delacroix", "Yilmaz", "Abernathy", "Szabo", "Tanaka", "Mbeki", "Ferreira", "Horvath",
    "Van der Berg", "Al-Mansouri", "Kaur", "Petrovic", "Oyelaran", "Whitcombe", "Zielinski", "Ramírez",
    "Takahashi", "Eriksen", "Moreau", "Ncube", "Desrosiers", "Kapoor", "Aguilar", "Lehtonen", "Osei-Bonsu",
)
STREETS = (
    "Quarry Hill Drive", "Juniper Circle", "Old Mill Court", "Larkspur Lane", "Harbor View Road",
    "Birchwood Avenue", "Cobblestone Way", "Meadowbrook Street", "Ridgeline Terrace", "Sycamore Place",
)
TOWNS = (
    ("Fairhaven", "MA", "02719"), ("Sandpoint", "ID", "83864"), ("Elmira Heights", "NY", "14903"),
    ("Port Townsend", "WA", "98368"), ("Marietta", "OH", "45750"), ("Bisbee", "AZ", "85603"),
    ("Lewes", "DE", "19958"), ("Decorah", "IA", "52101"), ("Hood River", "OR", "97031"),
)
AREA_CODES = ("212", "312", "415", "617", "715", "802", "907", "971")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


@dataclass(frozen=True)
class Person:
    first: str
    last: str

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def last_first(self) -> str:
        return f"{self.last}, {self.first}"

    @property
    def initial_last(self) -> str:
        return f"{self.first[0]}. {self.last}"

    @property
    def dicom(self) -> str:
        return f"{self.last}^{self.first}"


@dataclass(frozen=True)
class Identity:
    """Everything identifying in one report; layouts pick what they print."""

    patient: Person
    mrn: str
    accession: str
    account: str
    dob: date
    study: date
    signed: date
    prior: date
    study_time: str
    referrer: Person
    reader: Person
    second_reader: Person
    technologist: Person
    nurse: Person
    phone: str
    address: str

    @property
    def age(self) -> int:
        years = self.study.year - self.dob.year
        return years - ((self.study.month, self.study.day) < (self.dob.month, self.dob.day))


def _person(rng: random.Random, female: bool | None = None) -> Person:
    if female is None:
        female = rng.random() < 0.5
    return Person(rng.choice(FEMALE_FIRST if female else MALE_FIRST), rng.choice(SURNAMES))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def sample_identity(rng: random.Random, sex: str, age: int) -> Identity:
    """A patient of the given sex and age, a study date in 2019-2025 and the staff around it."""
    study = date(2019, 1, 1) + timedelta(days=rng.randint(0, 2550))
    dob = study - timedelta(days=int(age * 365.25) + rng.randint(1, 360))
    street = f"{rng.randint(12, 998)} {rng.choice(STREETS)}"
    town, state, zipcode = rng.choice(TOWNS)
    return Identity(
        patient=_person(rng, female=(sex == "female")),
        mrn=rng.choice(("0", "")) + _digits(rng, rng.choice((7, 8))),
        accession=str(rng.randint(1_000_000, 9_999_999)),
        account=str(rng.randint(100_000_000, 999_999_999)),
        dob=dob,
        study=study,
        signed=study + timedelta(days=rng.randint(0, 3)),
        prior=study - timedelta(days=rng.randint(200, 1500)),
        study_time=f"{rng.randint(7, 18):02d}:{rng.randint(0, 59):02d}",
        referrer=_person(rng),
        reader=_person(rng),
        second_reader=_person(rng),
        technologist=_person(rng),
        nurse=_person(rng),
        phone=f"({rng.choice(AREA_CODES)}) 555-01{rng.randint(0, 99):02d}",
        address=f"{street}, {town}, {state} {zipcode}",
    )


def fmt_date(d: date, style: str) -> str:
    """One date in one of the spellings seen in reports (US, ISO, European, UK, DD-Mon-YYYY, long)."""
    if style == "us":
        return f"{d.month:02d}/{d.day:02d}/{d.year}"
    if style == "iso":
        return d.isoformat()
    if style == "eu":
        return f"{d.day:02d}.{d.month:02d}.{d.year}"
    if style == "uk":
        return f"{d.day:02d}/{d.month:02d}/{d.year}"
    if style == "mon":
        return f"{d.day:02d}-{MONTHS[d.month - 1][:3]}-{d.year}"
    if style == "long":
        return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"
    raise ValueError(f"unknown date style {style!r}")
