"""ICH E2B(R3) ICSR XML (HL7 v3, ``urn:hl7-org:v3``) as wire-format reports.

A document is a batch (``MCCI_IN200100UV01`` holding ``PORR_IN049016UV`` messages) or a single
``PORR_IN049016UV`` message; each message's ``investigationEvent`` becomes one record. Documents
are parsed incrementally with defusedxml's parser, DTDs forbidden: one that declares a DTD,
entities or external references (a "billion laughs" bomb, an XXE attempt) is refused before
anything is expanded or fetched, as one error record (:mod:`.messages`).

Only what E2B(R3) makes invalid is refused, naming the element and the value (a code outside its
code list, a missing C.1.1 / C.1.8.1, a reaction without a MedDRA code); any element not listed
here (narratives, tests, dosage, indications, causality results, FDA and other regional elements,
extensions in other namespaces) is ignored. The paths follow the ICH implementation guide and were
checked against the FDA's reference instances. ``IE`` is ``PORR_IN049016UV/controlActProcess/
subject/investigationEvent``, ``AS`` is ``IE/component/adverseEventAssessment``, ``PR`` is
``AS/subject1/primaryRole``; "code c" means a child ``code`` with ``@code=c`` in the code system
named (OBS is 2.16.840.1.113883.3.989.2.1.1.19, CHR is …1.1.23; the system is always checked,
so regional elements that reuse a number in their own system are ignored):

=======================  ==========================================================================
wire field               E2B(R3) element and path
=======================  ==========================================================================
report_id                C.1.1 ``IE/id[@root=2.16.840.1.113883.3.989.2.1.3.1]/@extension``
case_id                  C.1.8.1 ``IE/id[@root=…2.1.3.2]/@extension``
created                  C.1.2 ``controlActProcess/effectiveTime/@value``
first_received           C.1.4 ``IE/effectiveTime/low/@value``
received, version        C.1.5 ``IE/availabilityTime/@value`` (else C.1.4); version below
report_type              C.1.3 ``IE/subjectOf2/investigationCharacteristic`` code 1 (CHR), 1-4
nullified, amended       C.1.11.1 characteristic code 3: ``value/@code`` 1 nullified, 2 amended
change_reason            C.1.11.2 characteristic code 4: ``value/originalText``
other_case_ids           C.1.9.1.r ``IE/subjectOf1/controlActEvent/id[@root=…2.1.3.3]``: r.2
                         ``@extension``, r.1 source ``@assigningAuthorityName``; the ids also go
                         to duplicate_of_ids (the engine's duplicate handling)
linked_report_ids        C.1.10.r ``IE/outboundRelationship/relatedInvestigation`` whose code is
                         not of …1.1.22 (a nullFlavor): ``subjectOf2/controlActEvent/id[@root=
                         …2.1.3.2]/@extension``; linked, not duplicates (a parent-child pair)
mah_id                   C.1.CN.3 (China) ``IE/component/observationEvent`` whose code is
                         ``C.1.CN.3`` (in the NMPA's code system): ``value/@code``
country,                 C.2.r.3 and C.2.r.4 of the primary source for regulatory purposes
reporter_qualification   (``IE/outboundRelationship`` with ``priorityNumber`` 1, else the first
                         ``relatedInvestigation`` code 2 of …1.1.22): ``…/assignedPerson/
                         asLocatedEntity/location/code`` and ``asQualifiedEntity/code`` 1-5;
                         country else E.i.9 of the first reaction
sender.type              C.3.1 ``IE/subjectOf1/controlActEvent/author/assignedEntity/code``
                         (…1.1.7):
                         1 mah, 2 and 4 regulator, 3 health_professional, 5 and 6 other, 7 patient
sender.institution_id    C.3.2 ``…/assignedEntity/representedOrganization/assignedEntity/
                         representedOrganization/name`` (the outer ``representedOrganization/name``
                         is the department, C.3.3.1)
patient                  D.2.2a/b ``PR/subjectOf2/observation`` code 3 (OBS) ``value/@value``,
                         ``@unit`` ({decade}, a, mo, wk, d, h; also as age_years); D.2.3 age group
                         code 4 (OBS) ``value/@code`` 0-6; D.5 ``PR/player1/administrativeGender
                         Code/@code`` 1 M, 2 F, a nullFlavor U
products                 G.k ``PR/subjectOf2/organizer`` code 4 (…1.1.20) ``/component/
                         substanceAdministration``, ``consumable/instanceOfKind/kindOfProduct``:
                         G.k.2.1 product_id ``code/@code`` (MPID, PhPID or e.g. an NDC) with
                         id_system ``@codeSystem``, G.k.2.2 ``name``, G.k.3.1 ``asManufactured
                         Product/subjectOf/approval/id``, G.k.3.3 ``approval/holder/role/
                         playingOrganization/name``; role G.k.1 ``AS/component/causality
                         Assessment`` code 20 (OBS) with a value of …1.1.13 (1-4) whose
                         ``subject2/productUseReference/id/@root`` is the substanceAdministration's
                         ``id/@root`` (suspect when none is given). A device the product names
                         (``kindOfProduct/part/partProduct[@classCode=DEV]``, FDA combination
                         products) follows it as a product of kind device, its first ``name``, the
                         product's role
reactions                E.i ``PR/subjectOf2/observation`` code 29 (OBS), ``value``: E.i.2.1b
                         llt_code ``@code`` (MedDRA, 2.16.840.1.113883.6.163, 8 digits), E.i.2.1a
                         meddra_version ``@codeSystemVersion``, llt ``@displayName`` if sent;
                         E.i.1.1a reported_text ``originalText``, E.i.1.1b reported_language its
                         ``@language``; E.i.1.2 translation_text ``outboundRelationship2/
                         observation`` code 30 ``/value``; E.i.3.2a-f seriousness (codes 34, 21,
                         33, 35, 12, 26: the true ones; serious if any); E.i.7 outcome (code 27,
                         0-5)
=======================  ==========================================================================

The MedDRA code is the reaction: pairs are counted by :attr:`pvsignal.reports.Reaction.event_key`
(``LLT:<code>`` until a terminology maps it to its PT), never by the reporter's text, which may be
in any language.

Version: E2B(R3) carries no follow-up number; the ICH guide identifies a follow-up by the same
C.1.8.1 with a later C.1.5. So the version is C.1.5 itself, read as the 14-digit number
YYYYMMDDhhmmss: a later transmission outranks an earlier one, and the same transmission sent
twice is the same version (C.1.4 stands in; without either the version is 1).

Batches: :func:`read_e2b_batch` also returns the batch header (N.1) and each ICSR's message
header (N.2.r, C.1.1), which :func:`pvsignal.readers.e2b_ack.build_ack` answers.
"""

from __future__ import annotations

from pvsignal.readers.e2b.messages import (
    BatchHeader,
    E2BReading,
    MessageHeader,
    read_e2b,
    read_e2b_batch,
    read_e2b_bytes,
    read_e2b_stream,
)

__all__ = [
    "BatchHeader",
    "E2BReading",
    "MessageHeader",
    "read_e2b",
    "read_e2b_batch",
    "read_e2b_bytes",
    "read_e2b_stream",
]
