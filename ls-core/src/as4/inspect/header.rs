//! The ebMS header as the report shows it: every UserMessage and SignalMessage, as written.

use super::report::{
    AgreementRefReport, EbmsErrorReport, MessagingReport, NrrReport, PartyReport, PayloadReport,
    PropertyReport, SchemaReport, SignalKind, SignalReport, UserMessageReport, ValueType,
};
use crate::as4::model::{Messaging, Party, Property, Signal, SignalMessage, UserMessage};

impl From<&Messaging> for MessagingReport {
    fn from(m: &Messaging) -> MessagingReport {
        MessagingReport {
            user_messages: m.user_messages.iter().map(Into::into).collect(),
            signals: m.signals.iter().map(Into::into).collect(),
        }
    }
}

fn party(p: &Party) -> PartyReport {
    PartyReport {
        party_ids: p
            .ids
            .iter()
            .map(|id| ValueType {
                value: id.value.clone(),
                r#type: id.r#type.clone(),
            })
            .collect(),
        role: p.role.clone(),
    }
}

fn properties(props: &[Property]) -> Vec<PropertyReport> {
    props
        .iter()
        .map(|p| PropertyReport {
            name: p.name.clone(),
            r#type: p.r#type.clone(),
            value: p.value.clone(),
        })
        .collect()
}

impl From<&UserMessage> for UserMessageReport {
    fn from(u: &UserMessage) -> UserMessageReport {
        UserMessageReport {
            message_id: u.info.message_id.clone(),
            ref_to_message_id: u.info.ref_to_message_id.clone(),
            timestamp: u.info.timestamp.clone(),
            mpc: u.mpc.clone(),
            from: party(&u.from),
            to: party(&u.to),
            agreement_ref: u.agreement_ref.as_ref().map(|a| AgreementRefReport {
                value: a.value.clone(),
                r#type: a.r#type.clone(),
                pmode: a.pmode.clone(),
            }),
            service: ValueType {
                value: u.service.value.clone(),
                r#type: u.service.r#type.clone(),
            },
            action: u.action.clone(),
            conversation_id: u.conversation_id.clone(),
            message_properties: properties(&u.properties),
            payloads: u
                .payloads
                .iter()
                .map(|p| PayloadReport {
                    href: p.href.clone(),
                    schema: p.schema.as_ref().map(|s| SchemaReport {
                        location: s.location.clone(),
                        version: s.version.clone(),
                        namespace: s.namespace.clone(),
                    }),
                    description: p.description.clone(),
                    part_properties: properties(&p.properties),
                })
                .collect(),
        }
    }
}

impl From<&SignalMessage> for SignalReport {
    fn from(s: &SignalMessage) -> SignalReport {
        let signal = match &s.signal {
            Signal::PullRequest { mpc } => SignalKind::PullRequest { mpc: mpc.clone() },
            Signal::Receipt {
                nrr, user_message, ..
            } => SignalKind::Receipt {
                user_message: *user_message,
                non_repudiation: nrr
                    .iter()
                    .map(|r| NrrReport {
                        uri: r.uri.clone(),
                        transforms: r.transforms.iter().map(|t| t.algorithm.clone()).collect(),
                        digest_method: r.digest_method.clone(),
                        digest_value: r.digest_value.clone(),
                    })
                    .collect(),
            },
            Signal::Error(errors) => SignalKind::Error {
                errors: errors
                    .iter()
                    .map(|e| EbmsErrorReport {
                        code: e.code.clone(),
                        severity: e.severity.as_str(),
                        category: e.category.clone(),
                        short_description: e.short_description.clone(),
                        description: e.description.clone(),
                        ref_to_message_in_error: e.ref_to_message_in_error.clone(),
                        origin: e.origin.clone(),
                        error_detail: e.error_detail.clone(),
                    })
                    .collect(),
            },
        };
        SignalReport {
            message_id: s.info.message_id.clone(),
            ref_to_message_id: s.info.ref_to_message_id.clone(),
            timestamp: s.info.timestamp.clone(),
            signal,
        }
    }
}
