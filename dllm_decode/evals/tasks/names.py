"""Closed name pools for the waiting-line tasks.

The pools are disjoint (no word is both a first and a last name) so a full
name's two halves are unambiguous, and every word is a single alphabetic token
so the compact format can use a closed word-level vocabulary.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

FIRST_NAMES: tuple[str, ...] = tuple("""
Aaron Abigail Adam Alice Amber Andrea Angela Anna Arthur Audrey Austin Barbara
Benjamin Beth Brenda Brian Bruce Caleb Carl Caroline Chloe Claire Colin Connor
Daisy Daniel Diana Dylan Edgar Eleanor Elijah Emily Emma Ethan Eva Felix Fiona
Frank Gavin Gemma Grace Hannah Harold Hazel Henrietta Irene Isaac Isabel Ivan
Jacob Jasmine Jeremy Jessica Joel Julia Karen Kevin Laura Leah Leon Lily Lucas
Lucy Luke Madison Martha Megan Nathan Noah Nora Olivia Oscar Owen Paula Peter
Quentin Rachel Rebecca Ruth Samuel Simon Sophia Stella Tanya Theo Ursula
Victor Vivian Wendy Xavier Yvonne Zachary
""".split())

LAST_NAMES: tuple[str, ...] = tuple("""
Aguilar Alvarez Andrews Armstrong Bailey Baker Barnes Becker Bennett Black
Boyd Bradley Brooks Brown Bryant Burns Butler Campbell Carpenter Carroll
Carter Castillo Castro Chavez Chen Clark Coleman Collins Cook Cooper Cox
Crawford Cruz Cunningham Daniels Davis Delgado Diaz Dixon Duncan Dunn Edwards
Elliott Ellis Evans Ferguson Fernandez Fisher Flores Foster Fox Freeman Garcia
Gardner Garza Gibson Gomez Gonzalez Gordon Graham Gray Green Griffin Gutierrez
Hall Hamilton Hansen Harper Harris Hart Hawkins Hayes Henderson Hernandez
Herrera Hicks Hill Hoffman Holmes Howard Hudson Hughes Hunt Jackson Jenkins
Jimenez Johnson Jones Kelly Kennedy Kim King Knight Lane Lee Lewis Lopez
Marshall Martin Martinez Mason Medina Meyer Miller Mills Mitchell Moore
Morales Moreno Morgan Morris Murphy Murray Myers Nelson Newman Nguyen Nichols
Olson Ortiz Owens Palmer Parker Patel Payne Pearson Perez Perkins Perry Peters
Phillips Pierce Porter Powell Price Ramirez Ramos Reed Reyes Rice Richards
Rivera Roberts Robinson Rodriguez Rogers Romero Rose Ross Russell Sanchez
Sanders Santos Schmidt Shaw Silva Simmons Simpson Smith Snyder Soto Spencer
Steele Stevens Stewart Stone Sullivan Taylor Thompson Torres Tucker Turner
Vargas Vaughn Wagner Walker Wallace Walsh Ward Warren Watson Weaver Webb Wells
West Wheeler White Williams Wilson Wood Wright Young
""".split())


def full_name(first: str, last: str) -> str:
    """Join the two halves; kept in one place so the separator is consistent."""
    return f"{first} {last}"


def split_name(name: str) -> tuple[str, str]:
    """Return ``(first, last)`` of a full name produced by :func:`full_name`."""
    first, _, last = name.partition(" ")
    return first, last


def draw_names(rng: random.Random, count: int, exclude: Iterable[str] = ()) -> list[str]:
    """Draw ``count`` distinct full names not in ``exclude``, in draw order.

    Halves are drawn independently (so two people may share a last name, which
    is what makes the sort tie-break meaningful); only full names must differ.
    """
    taken = set(exclude)
    names: list[str] = []
    while len(names) < count:
        name = full_name(rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names
