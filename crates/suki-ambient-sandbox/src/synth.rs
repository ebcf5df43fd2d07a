//! Synthetic, clearly fake clinical content for sandbox sessions. No real patient data.

use serde_json::json;
use suki_ambient_core::api::{
    Code, CodeSystem, Diagnoses, Diagnosis, FormFillingBody, FormFillingStructuredData,
    GeneratedForm, MedicationOrder, MedicationOrders, NonGeneratedForm, NoteContent, Offset,
    Orders, Recording, RecordingFile, StructuredBlock, StructuredData, StructuredDataBody,
    SummarySection, Transcript, TranscriptSegment,
};

/// Everything a completed sandbox session produced.
#[derive(Clone, Debug)]
pub(crate) struct Generated {
    pub(crate) note: NoteContent,
    pub(crate) structured: StructuredData,
    pub(crate) transcript: Transcript,
    pub(crate) recording: Recording,
    pub(crate) form: FormFillingStructuredData,
}

struct Visit {
    complaint: &'static str,
    assessment: &'static str,
    dx: (&'static str, &'static str, &'static str),
    med: (&'static str, &'static str, &'static str, &'static str),
    lines: [&'static str; 4],
}

const VISITS: [Visit; 3] = [
    Visit {
        complaint: "SYNTHETIC: follow-up of blood pressure; home readings around 150/95.",
        assessment: "SYNTHETIC: essential hypertension, not at goal. Start lisinopril; recheck in 4 weeks.",
        dx: ("I10", "Essential hypertension", "ICD10"),
        med: ("lisinopril", "10 mg", "once daily", "oral"),
        lines: [
            "Doctor: (synthetic) How have your blood pressure readings been at home?",
            "Patient: (synthetic) Mostly around one fifty over ninety five.",
            "Doctor: (synthetic) Let's start lisinopril ten milligrams once a day.",
            "Patient: (synthetic) Okay, I'll check it again in a month.",
        ],
    },
    Visit {
        complaint: "SYNTHETIC: wheezing for three days after a cold.",
        assessment: "SYNTHETIC: mild asthma exacerbation. Albuterol as needed; return if worse.",
        dx: ("J45.901", "Asthma with acute exacerbation", "ICD10"),
        med: ("albuterol", "2 puffs", "every 4 hours as needed", "inhaled"),
        lines: [
            "Doctor: (synthetic) When did the wheezing start?",
            "Patient: (synthetic) About three days ago, after a cold.",
            "Doctor: (synthetic) Use the albuterol inhaler, two puffs as needed.",
            "Patient: (synthetic) Got it, thank you.",
        ],
    },
    Visit {
        complaint: "SYNTHETIC: annual visit; fasting glucose 132 mg/dL last month.",
        assessment: "SYNTHETIC: type 2 diabetes mellitus. Start metformin; diet counselling given.",
        dx: (
            "E11.9",
            "Type 2 diabetes mellitus without complications",
            "ICD10",
        ),
        med: ("metformin", "500 mg", "twice daily with meals", "oral"),
        lines: [
            "Doctor: (synthetic) Your fasting glucose was one thirty two.",
            "Patient: (synthetic) Is that high?",
            "Doctor: (synthetic) It is. We'll start metformin five hundred twice a day.",
            "Patient: (synthetic) I'll take it with meals.",
        ],
    },
];

fn offset(seconds: i64) -> Offset {
    Offset {
        hours: 0,
        minutes: seconds / 60,
        seconds: seconds % 60,
        nanos: 0,
    }
}

/// Content for the `index`-th completed session (cycles through a few visits).
pub(crate) fn generate(index: u64, session_id: &str, base_url: &str) -> Generated {
    let visit = &VISITS[(index % VISITS.len() as u64) as usize];
    let recording_id = format!("rec-{session_id}");
    let note = NoteContent {
        summary: vec![
            SummarySection {
                title: Some("HISTORY OF PRESENT ILLNESS".into()),
                content: Some(visit.complaint.into()),
                loinc_code: Some("10164-2".into()),
                source_transcripts: Some(vec![visit.lines[0].into(), visit.lines[1].into()]),
            },
            SummarySection {
                title: Some("ASSESSMENT AND PLAN".into()),
                content: Some(visit.assessment.into()),
                loinc_code: Some("51847-2".into()),
                source_transcripts: Some(vec![visit.lines[2].into()]),
            },
        ],
        structured_data: vec![StructuredBlock {
            title: Some("MEDICATIONS".into()),
            data: json!({"medication": visit.med.0, "dosage": visit.med.1})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }],
    };
    let structured = StructuredData {
        structured_data: StructuredDataBody {
            diagnoses: Some(Diagnoses {
                values: vec![Diagnosis {
                    codes: vec![Code {
                        code: visit.dx.0.into(),
                        description: Some(visit.dx.1.into()),
                        system: Some(CodeSystem::from(visit.dx.2)),
                    }],
                    diagnosis_note: Some(format!("SYNTHETIC: {}", visit.dx.1)),
                    laterality_indicator: Some(4),
                    post_coord_lex_flag: Some(1),
                    other: Default::default(),
                }],
                other: Default::default(),
            }),
            orders: Some(Orders {
                medication_orders: Some(MedicationOrders {
                    partial_values: vec![MedicationOrder {
                        medication: Some(visit.med.0.into()),
                        dosage: Some(visit.med.1.into()),
                        frequency: Some(visit.med.2.into()),
                        route: Some(visit.med.3.into()),
                        codes: Vec::new(),
                        other: Default::default(),
                    }],
                    other: Default::default(),
                }),
                other: Default::default(),
            }),
            other: Default::default(),
        },
    };
    let transcript = Transcript {
        final_transcript: visit
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let start = 6 * i as i64;
                TranscriptSegment {
                    transcript: (*line).into(),
                    transcript_id: format!("seg-{session_id}-{i}"),
                    recording_id: recording_id.clone(),
                    lang_id: Some("en".into()),
                    start_time: Some(format!("2026-01-01T09:00:{:02}.000000000Z", start)),
                    end_time: Some(format!("2026-01-01T09:00:{:02}.000000000Z", start + 5)),
                    start_offset: Some(offset(start)),
                    end_offset: Some(offset(start + 5)),
                }
            })
            .collect(),
    };
    let recording = Recording {
        recordings: vec![RecordingFile {
            recording_id: recording_id.clone(),
            presigned_url: format!("{base_url}sandbox/audio/{recording_id}.wav"),
            expires_at: 4_102_444_800,
            sequence_number: 1,
        }],
        is_streamable: false,
    };
    let form = FormFillingStructuredData {
        structured_data: FormFillingBody {
            generated_values: vec![GeneratedForm {
                id: Some(format!("form-{session_id}")),
                form_template_id: Some("sandbox-vitals-template".into()),
                title: Some("Adult Vitals (synthetic)".into()),
                form_type: Some("VITALS_ASSESSMENT".into()),
                status: Some("MEDICAL_FORM_STATUS_COMPLETED".into()),
                data: Some(json!({"blood_pressure": "150/95", "synthetic": true})),
                other: Default::default(),
            }],
            non_generated_values: vec![NonGeneratedForm {
                form_template_id: "sandbox-allergies-template".into(),
            }],
        },
    };
    Generated {
        note,
        structured,
        transcript,
        recording,
        form,
    }
}

/// A fresh random id shaped like a UUID v4.
pub(crate) fn new_id() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        fastrand::u16(0x8000..0xc000),
        fastrand::u64(..1 << 48)
    )
}
