//! The three formats of the business-text generator: UBL 2.1 invoices and credit notes,
//! EDIFACT D.96A INVOIC and ORDERS interchanges, CSV exports (journal, order lines, bank
//! statement).

use super::words::COUNTRIES;
use super::*;

impl BusinessText {
    // ---- UBL 2.1 -----------------------------------------------------------------------------

    fn ubl_party(out: &mut String, role: &str, p: &Party) {
        let c = &COUNTRIES[p.country];
        let name = xml_escape(&p.name);
        let _ = write!(
            out,
            "  <cac:{role}>\n    <cac:Party>\n      <cbc:EndpointID schemeID=\"0088\">{}</cbc:EndpointID>\n      <cac:PartyIdentification>\n        <cbc:ID>{}</cbc:ID>\n      </cac:PartyIdentification>\n      <cac:PartyName>\n        <cbc:Name>{name}</cbc:Name>\n      </cac:PartyName>\n      <cac:PostalAddress>\n        <cbc:StreetName>{}</cbc:StreetName>\n        <cbc:CityName>{}</cbc:CityName>\n        <cbc:PostalZone>{}</cbc:PostalZone>\n        <cac:Country>\n          <cbc:IdentificationCode>{}</cbc:IdentificationCode>\n        </cac:Country>\n      </cac:PostalAddress>\n      <cac:PartyTaxScheme>\n        <cbc:CompanyID>{}</cbc:CompanyID>\n        <cac:TaxScheme>\n          <cbc:ID>VAT</cbc:ID>\n        </cac:TaxScheme>\n      </cac:PartyTaxScheme>\n      <cac:PartyLegalEntity>\n        <cbc:RegistrationName>{name}</cbc:RegistrationName>\n      </cac:PartyLegalEntity>\n      <cac:Contact>\n        <cbc:Name>{} ({})</cbc:Name>\n        <cbc:Telephone>{}</cbc:Telephone>\n        <cbc:ElectronicMail>{}</cbc:ElectronicMail>\n      </cac:Contact>\n    </cac:Party>\n  </cac:{role}>\n",
            p.gln, p.customer_no, xml_escape(&p.street), p.city, p.postcode, c.code, p.vat_id,
            p.contact, p.department, p.phone, p.email
        );
    }

    pub(super) fn ubl_invoice(&mut self, out: &mut String) {
        let s = self.rng.skewed(self.suppliers.len());
        let b = self.rng.skewed(self.customers.len());
        let cur = COUNTRIES[self.suppliers[s].country].currency;
        let vat_rates = COUNTRIES[self.suppliers[s].country].vat;
        let n = 1 + self.rng.skewed(30);
        let credit = self.rng.chance(4);
        self.invoice_no += 1;
        let inv = self.invoice_no;
        let day = self.day;
        let due = day + self.rng.pick(&[14, 30, 30, 30, 45, 60]);
        let order = self.order_no - self.rng.below(3000);
        let buyer_ref = self.rng.range(1000, 99_999);
        let (doc, type_el, code, qty_el) = if credit {
            (
                "CreditNote",
                "CreditNoteTypeCode",
                "381",
                "CreditedQuantity",
            )
        } else {
            ("Invoice", "InvoiceTypeCode", "380", "InvoicedQuantity")
        };
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{doc} xmlns=\"urn:oasis:names:specification:ubl:schema:xsd:{doc}-2\" xmlns:cac=\"urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2\" xmlns:cbc=\"urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2\">\n  <cbc:CustomizationID>urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0</cbc:CustomizationID>\n  <cbc:ProfileID>urn:fdc:peppol.eu:2017:poacc:billing:01:1.0</cbc:ProfileID>\n  <cbc:ID>{}{inv:08}</cbc:ID>\n  <cbc:IssueDate>",
            if credit { "CN" } else { "INV" }
        );
        date(out, day, "-");
        out.push_str("</cbc:IssueDate>\n");
        if !credit {
            out.push_str("  <cbc:DueDate>");
            date(out, due, "-");
            out.push_str("</cbc:DueDate>\n");
        }
        let _ = writeln!(out, "  <cbc:{type_el}>{code}</cbc:{type_el}>");
        if self.rng.chance(40) {
            out.push_str("  <cbc:Note>");
            let mut note = String::new();
            self.note(&mut note, b);
            out.push_str(&xml_escape(&note));
            out.push_str("</cbc:Note>\n");
        }
        let _ = write!(
            out,
            "  <cbc:DocumentCurrencyCode>{cur}</cbc:DocumentCurrencyCode>\n  <cbc:BuyerReference>{buyer_ref}</cbc:BuyerReference>\n  <cac:OrderReference>\n    <cbc:ID>PO-{order}</cbc:ID>\n  </cac:OrderReference>\n"
        );
        Self::ubl_party(out, "AccountingSupplierParty", &self.suppliers[s]);
        Self::ubl_party(out, "AccountingCustomerParty", &self.customers[b]);
        let cust = &self.customers[b];
        out.push_str("  <cac:Delivery>\n    <cbc:ActualDeliveryDate>");
        date(out, day - self.rng.below(5) as i64, "-");
        let _ = write!(
            out,
            "</cbc:ActualDeliveryDate>\n    <cac:DeliveryLocation>\n      <cac:Address>\n        <cbc:StreetName>{}</cbc:StreetName>\n        <cbc:CityName>{}</cbc:CityName>\n        <cbc:PostalZone>{}</cbc:PostalZone>\n        <cac:Country>\n          <cbc:IdentificationCode>{}</cbc:IdentificationCode>\n        </cac:Country>\n      </cac:Address>\n    </cac:DeliveryLocation>\n  </cac:Delivery>\n",
            xml_escape(&cust.street), cust.city, cust.postcode, COUNTRIES[cust.country].code
        );
        let sup = &self.suppliers[s];
        let _ = write!(
            out,
            "  <cac:PaymentMeans>\n    <cbc:PaymentMeansCode name=\"Credit transfer\">30</cbc:PaymentMeansCode>\n    <cbc:PaymentID>{inv}</cbc:PaymentID>\n    <cac:PayeeFinancialAccount>\n      <cbc:ID>{}</cbc:ID>\n      <cbc:Name>{}</cbc:Name>\n      <cac:FinancialInstitutionBranch>\n        <cbc:ID>{}</cbc:ID>\n      </cac:FinancialInstitutionBranch>\n    </cac:PayeeFinancialAccount>\n  </cac:PaymentMeans>\n  <cac:PaymentTerms>\n    <cbc:Note>{}</cbc:Note>\n  </cac:PaymentTerms>\n",
            sup.iban, xml_escape(&sup.name), sup.bic,
            self.rng.pick(&["Net 30 days", "30 days net, 2% discount within 10 days", "Payable on receipt", "60 days end of month", "14 days 3% discount, 30 days net"])
        );
        let supplier_country = sup.country;
        let lines = self.lines(n, vat_rates);
        // Totals per VAT rate.
        let mut rates: Vec<(u32, i64)> = Vec::new();
        for l in &lines {
            match rates.iter_mut().find(|r| r.0 == l.vat) {
                Some(r) => r.1 += l.net,
                None => rates.push((l.vat, l.net)),
            }
        }
        let net: i64 = lines.iter().map(|l| l.net).sum();
        let tax: i64 = rates.iter().map(|r| (r.1 * r.0 as i64 + 50) / 100).sum();
        let mut a = String::new();
        money(&mut a, tax, false);
        let _ = writeln!(
            out,
            "  <cac:TaxTotal>\n    <cbc:TaxAmount currencyID=\"{cur}\">{a}</cbc:TaxAmount>"
        );
        for (rate, base) in &rates {
            a.clear();
            money(&mut a, *base, false);
            let mut t = String::new();
            money(&mut t, (base * *rate as i64 + 50) / 100, false);
            let _ = write!(
                out,
                "    <cac:TaxSubtotal>\n      <cbc:TaxableAmount currencyID=\"{cur}\">{a}</cbc:TaxableAmount>\n      <cbc:TaxAmount currencyID=\"{cur}\">{t}</cbc:TaxAmount>\n      <cac:TaxCategory>\n        <cbc:ID>S</cbc:ID>\n        <cbc:Percent>{rate}</cbc:Percent>\n        <cac:TaxScheme>\n          <cbc:ID>VAT</cbc:ID>\n        </cac:TaxScheme>\n      </cac:TaxCategory>\n    </cac:TaxSubtotal>\n"
            );
        }
        out.push_str("  </cac:TaxTotal>\n  <cac:LegalMonetaryTotal>\n");
        for (el, v) in [
            ("LineExtensionAmount", net),
            ("TaxExclusiveAmount", net),
            ("TaxInclusiveAmount", net + tax),
            ("PayableAmount", net + tax),
        ] {
            a.clear();
            money(&mut a, v, false);
            let _ = writeln!(out, "    <cbc:{el} currencyID=\"{cur}\">{a}</cbc:{el}>");
        }
        out.push_str("  </cac:LegalMonetaryTotal>\n");
        let line_el = if credit {
            "CreditNoteLine"
        } else {
            "InvoiceLine"
        };
        for (i, l) in lines.iter().enumerate() {
            a.clear();
            money(&mut a, l.net, false);
            let mut p = String::new();
            money(&mut p, l.price, false);
            let _ = write!(
                out,
                "  <cac:{line_el}>\n    <cbc:ID>{}</cbc:ID>\n    <cbc:{qty_el} unitCode=\"{}\">{}</cbc:{qty_el}>\n    <cbc:LineExtensionAmount currencyID=\"{cur}\">{a}</cbc:LineExtensionAmount>\n    <cac:OrderLineReference>\n      <cbc:LineID>{}</cbc:LineID>\n    </cac:OrderLineReference>\n",
                i + 1, self.articles[l.article].unit, l.qty, (i + 1) * 10
            );
            if l.discount > 0 {
                let mut d = String::new();
                money(&mut d, l.qty * l.price - l.net, false);
                let _ = write!(
                    out,
                    "    <cac:AllowanceCharge>\n      <cbc:ChargeIndicator>false</cbc:ChargeIndicator>\n      <cbc:AllowanceChargeReason>Discount</cbc:AllowanceChargeReason>\n      <cbc:MultiplierFactorNumeric>{}.{:02}</cbc:MultiplierFactorNumeric>\n      <cbc:Amount currencyID=\"{cur}\">{d}</cbc:Amount>\n    </cac:AllowanceCharge>\n",
                    l.discount / 100, l.discount % 100
                );
            }
            let name = xml_escape(&self.articles[l.article].name);
            let _ = write!(
                out,
                "    <cac:Item>\n      <cbc:Name>{name}</cbc:Name>\n      <cac:SellersItemIdentification>\n        <cbc:ID>{}</cbc:ID>\n      </cac:SellersItemIdentification>\n      <cac:StandardItemIdentification>\n        <cbc:ID schemeID=\"0160\">{}</cbc:ID>\n      </cac:StandardItemIdentification>\n      <cac:OriginCountry>\n        <cbc:IdentificationCode>{}</cbc:IdentificationCode>\n      </cac:OriginCountry>\n      <cac:ClassifiedTaxCategory>\n        <cbc:ID>S</cbc:ID>\n        <cbc:Percent>{}</cbc:Percent>\n        <cac:TaxScheme>\n          <cbc:ID>VAT</cbc:ID>\n        </cac:TaxScheme>\n      </cac:ClassifiedTaxCategory>\n    </cac:Item>\n    <cac:Price>\n      <cbc:PriceAmount currencyID=\"{cur}\">{p}</cbc:PriceAmount>\n    </cac:Price>\n  </cac:{line_el}>\n",
                self.articles[l.article].sku, self.articles[l.article].gtin, COUNTRIES[supplier_country].code, l.vat
            );
        }
        let _ = writeln!(out, "</{doc}>");
    }

    // ---- EDIFACT D.96A -----------------------------------------------------------------------

    fn edi_nad(out: &mut String, q: &str, p: &Party) -> usize {
        let _ = write!(
            out,
            "NAD+{q}+{}::9++{}+{}+{}++{}+{}'\nRFF+VA:{}'\nCTA+IC+:{}, {}'\nCOM+{}:TE'\n",
            p.gln,
            edi_escape(&p.name),
            edi_escape(&p.street),
            edi_escape(p.city),
            p.postcode,
            COUNTRIES[p.country].code,
            edi_escape(&p.vat_id),
            edi_escape(&p.contact),
            p.department,
            edi_escape(&p.phone)
        );
        4
    }

    pub(super) fn edifact(&mut self, out: &mut String) {
        let s = self.rng.skewed(self.suppliers.len());
        let orders = self.rng.chance(40);
        let kind = if orders { "ORDERS" } else { "INVOIC" };
        self.interchange += 1;
        let icr = self.interchange;
        let b0 = self.rng.skewed(self.customers.len());
        let (from, to) = if orders {
            (&self.customers[b0].gln, &self.suppliers[s].gln)
        } else {
            (&self.suppliers[s].gln, &self.customers[b0].gln)
        };
        out.push_str("UNA:+.? '\nUNB+UNOC:3+");
        let _ = write!(out, "{from}:14+{to}:14+");
        let day = self.day;
        let mut d = String::new();
        date(&mut d, day, "");
        let _ = writeln!(
            out,
            "{}:{:02}{:02}+{icr:08}++{kind}'",
            &d[2..],
            self.minute / 60,
            self.minute % 60
        );
        let messages = 1 + self.rng.skewed(12);
        for m in 1..=messages {
            let b = if m == 1 {
                b0
            } else {
                self.rng.skewed(self.customers.len())
            };
            let cur = COUNTRIES[self.suppliers[s].country].currency;
            let vat = COUNTRIES[self.suppliers[s].country].vat;
            let mut segs = 0;
            let _ = writeln!(out, "UNH+{m}+{kind}:D:96A:UN:EAN008'");
            if orders {
                self.order_no += 1;
                let _ = writeln!(out, "BGM+220+{}+9'", self.order_no);
            } else {
                self.invoice_no += 1;
                let _ = writeln!(out, "BGM+380+{}+9'", self.invoice_no);
            }
            out.push_str("DTM+137:");
            date(out, day, "");
            out.push_str(":102'\n");
            segs += 3;
            if orders {
                out.push_str("DTM+2:");
                date(out, day + self.rng.range(2, 21) as i64, "");
                out.push_str(":102'\n");
                segs += 1;
            } else {
                let _ = writeln!(out, "RFF+ON:{}'", self.order_no - self.rng.below(3000));
                out.push_str("DTM+171:");
                date(out, day - self.rng.range(3, 30) as i64, "");
                out.push_str(":102'\n");
                segs += 2;
            }
            if self.rng.chance(35) {
                let mut note = String::new();
                self.note(&mut note, b);
                let _ = writeln!(out, "FTX+AAI+++{}'", edi_escape(&note));
                segs += 1;
            }
            let (first, second) = if orders { ("BY", "SU") } else { ("SU", "BY") };
            let (p1, p2) = if orders {
                (&self.customers[b], &self.suppliers[s])
            } else {
                (&self.suppliers[s], &self.customers[b])
            };
            segs += Self::edi_nad(out, first, p1);
            segs += Self::edi_nad(out, second, p2);
            if self.rng.chance(50) {
                let c = &self.customers[b];
                let _ = writeln!(
                    out,
                    "NAD+DP+{}::9++{}+{}+{}++{}+{}'",
                    c.gln,
                    edi_escape(&c.name),
                    edi_escape(&c.street),
                    edi_escape(c.city),
                    c.postcode,
                    COUNTRIES[c.country].code
                );
                segs += 1;
            }
            let _ = writeln!(out, "CUX+2:{cur}:{}'", if orders { 9 } else { 4 });
            segs += 1;
            if !orders {
                let _ = writeln!(out, "PAT+1++5:3:D:{}'", self.rng.pick(&[14, 30, 45, 60]));
                segs += 1;
            }
            let n = 1 + self.rng.skewed(40);
            let lines = self.lines(n, vat);
            let mut a = String::new();
            for (i, l) in lines.iter().enumerate() {
                let unit = match self.articles[l.article].unit {
                    "EA" => "PCE",
                    u => u,
                };
                let _ = write!(
                    out,
                    "LIN+{}++{}:EN'\nPIA+1+{}:SA'\nIMD+F++:::{}'\nQTY+{}:{}:{unit}'\n",
                    i + 1,
                    self.articles[l.article].gtin,
                    edi_escape(&self.articles[l.article].sku),
                    edi_escape(&self.articles[l.article].name),
                    if orders { 21 } else { 47 },
                    l.qty
                );
                a.clear();
                money(&mut a, l.net, false);
                let _ = writeln!(out, "MOA+203:{a}'");
                a.clear();
                money(&mut a, l.price, false);
                let _ = writeln!(out, "PRI+AAA:{a}'");
                segs += 6;
                if !orders {
                    let _ = writeln!(out, "TAX+7+VAT+++:::{}+S'", l.vat);
                    segs += 1;
                }
            }
            out.push_str("UNS+S'\n");
            let _ = writeln!(out, "CNT+2:{n}'");
            segs += 2;
            if !orders {
                let net: i64 = lines.iter().map(|l| l.net).sum();
                let tax: i64 = lines
                    .iter()
                    .map(|l| (l.net * l.vat as i64 + 50) / 100)
                    .sum();
                for (q, v) in [(79, net), (125, net), (176, tax), (86, net + tax)] {
                    a.clear();
                    money(&mut a, v, false);
                    let _ = writeln!(out, "MOA+{q}:{a}'");
                }
                segs += 4;
            }
            let _ = writeln!(out, "UNT+{}+{m}'", segs + 2);
        }
        let _ = writeln!(out, "UNZ+{messages}+{icr:08}'");
    }

    // ---- CSV ---------------------------------------------------------------------------------

    pub(super) fn csv_ledger(&mut self, out: &mut String) {
        // A German-style journal export: semicolons, decimal commas.
        out.push_str("Buchungsnr;Belegdatum;Buchungsdatum;Belegnr;Konto;Kontobezeichnung;Gegenkonto;Kostenstelle;Soll;Haben;Währung;Steuerschlüssel;Partner;Buchungstext\n");
        const ACCOUNTS: &[(u32, &str)] = &[
            (1200, "Bank"),
            (1400, "Forderungen aus L+L"),
            (1576, "Abziehbare Vorsteuer 19 %"),
            (1571, "Abziehbare Vorsteuer 7 %"),
            (1600, "Verbindlichkeiten aus L+L"),
            (1776, "Umsatzsteuer 19 %"),
            (3400, "Wareneingang 19 % Vorsteuer"),
            (4400, "Erlöse 19 % USt"),
            (4300, "Erlöse 7 % USt"),
            (4930, "Bürobedarf"),
            (4210, "Miete"),
            (4520, "Kfz-Kosten"),
            (4650, "Bewirtungskosten"),
            (4670, "Reisekosten Arbeitnehmer"),
            (4830, "Abschreibungen"),
            (4910, "Porto"),
            (4920, "Telefon"),
            (4980, "Sonstiger Betriebsbedarf"),
            (6300, "Sonstige Aufwendungen"),
        ];
        let rows = self.rng.range(200, 2500);
        let mut a = String::new();
        for _ in 0..rows {
            self.journal_no += 1;
            let (acct, name) = self.rng.pick(ACCOUNTS);
            let (contra, _) = self.rng.pick(ACCOUNTS);
            let amount = self.rng.price(50, 2_500_000);
            let debit = self.rng.chance(50);
            let p = self.rng.skewed(self.customers.len());
            let day = self.day - self.rng.below(30) as i64;
            let _ = write!(out, "{};", self.journal_no);
            date_de(out, day);
            out.push(';');
            date_de(out, self.day);
            let _ = write!(
                out,
                ";{}{};{acct};{name};{contra};{};",
                self.rng.pick(&["RE", "ER", "KA", "BA", "GS"]),
                self.rng.range(10_000, 999_999),
                self.rng
                    .pick(&["100", "110", "200", "210", "300", "410", "500", ""])
            );
            a.clear();
            money(&mut a, amount, true);
            if debit {
                let _ = write!(out, "{a};;");
            } else {
                let _ = write!(out, ";{a};");
            }
            let text = match self.rng.below(5) {
                0 => format!(
                    "Rechnung {} vom {}",
                    self.invoice_no - self.rng.below(5000),
                    {
                        let mut d = String::new();
                        date_de(&mut d, day);
                        d
                    }
                ),
                1 => format!("Zahlung {} Skonto", self.customers[p].name),
                2 => {
                    let mut n = String::new();
                    self.note(&mut n, p);
                    n
                }
                3 => format!(
                    "{} {}",
                    name,
                    self.rng.pick(&[
                        "Januar",
                        "Februar",
                        "März",
                        "April",
                        "Mai",
                        "Juni",
                        "Juli",
                        "August",
                        "September",
                        "Oktober",
                        "November",
                        "Dezember"
                    ])
                ),
                _ => format!("Gutschrift {}", self.rng.range(1000, 99_999)),
            };
            let _ = writeln!(
                out,
                "EUR;{};{};{}",
                self.rng.pick(&["9", "8", "", "", "3", "2"]),
                csv_field(&self.customers[p].name, ';'),
                csv_field(&text, ';')
            );
        }
    }

    pub(super) fn csv_orders(&mut self, out: &mut String) {
        out.push_str("order_no,order_date,customer_no,customer_name,city,country,line,sku,gtin,description,qty,unit,unit_price,discount_pct,net_amount,currency,vat_rate,status,requested_delivery\n");
        let orders = self.rng.range(50, 600);
        let mut a = String::new();
        for _ in 0..orders {
            self.order_no += 1;
            let b = self.rng.skewed(self.customers.len());
            let c = &COUNTRIES[self.customers[b].country];
            let n = 1 + self.rng.skewed(15);
            let status = self.rng.pick(&[
                "open",
                "confirmed",
                "shipped",
                "invoiced",
                "cancelled",
                "backorder",
            ]);
            let delivery = self.day + self.rng.range(1, 30) as i64;
            let order_no = self.order_no;
            let day = self.day;
            let lines = self.lines(n, c.vat);
            let cust = &self.customers[b];
            for (i, l) in lines.iter().enumerate() {
                let _ = write!(out, "SO{order_no},");
                date(out, day, "-");
                let _ = write!(
                    out,
                    ",{},{},{},{},{},{},{},{},{},{},",
                    cust.customer_no,
                    csv_field(&cust.name, ','),
                    csv_field(cust.city, ','),
                    c.code,
                    (i + 1) * 10,
                    self.articles[l.article].sku,
                    self.articles[l.article].gtin,
                    csv_field(&self.articles[l.article].name, ','),
                    l.qty,
                    self.articles[l.article].unit
                );
                a.clear();
                money(&mut a, l.price, false);
                let _ = write!(out, "{a},{}.{:02},", l.discount / 100, l.discount % 100);
                a.clear();
                money(&mut a, l.net, false);
                let _ = write!(out, "{a},{},{},{status},", c.currency, l.vat);
                date(out, delivery, "-");
                out.push('\n');
            }
        }
    }

    pub(super) fn csv_statement(&mut self, out: &mut String) {
        out.push_str("booking_date,value_date,amount,currency,counterparty,iban,bic,remittance_information,end_to_end_id,balance\n");
        let rows = self.rng.range(100, 1500);
        let mut a = String::new();
        for _ in 0..rows {
            let p = self.rng.skewed(self.customers.len());
            let incoming = self.rng.chance(60);
            let amount = self.rng.price(100, 5_000_000) * if incoming { 1 } else { -1 };
            self.statement_balance += amount;
            date(out, self.day, "-");
            out.push(',');
            date(out, self.day - self.rng.below(3) as i64, "-");
            out.push(',');
            a.clear();
            money(&mut a, amount, false);
            let remittance = if incoming {
                let no = self.customers[p].customer_no;
                format!("INV{:08} {no}", self.invoice_no - self.rng.below(8000))
            } else {
                let mut n = String::new();
                self.note(&mut n, p);
                n
            };
            let mut e2e = String::new();
            self.rng.letters(&mut e2e, 2);
            self.rng.digits(&mut e2e, 14);
            let c = &self.customers[p];
            let _ = write!(
                out,
                "{a},EUR,{},{},{},{},{e2e},",
                csv_field(&c.name, ','),
                c.iban,
                c.bic,
                csv_field(&remittance, ',')
            );
            a.clear();
            money(&mut a, self.statement_balance, false);
            let _ = writeln!(out, "{a}");
        }
    }
}
