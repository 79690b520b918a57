//! The word lists of the business-text generator: countries (legal forms, streets, cities and
//! their postcode patterns, VAT rates, IBAN and phone patterns), company and person names,
//! article families, free-text notes.

pub(super) struct Country {
    pub(super) code: &'static str,
    pub(super) currency: &'static str,
    pub(super) vat: &'static [u32],
    pub(super) forms: &'static [&'static str],
    pub(super) streets: &'static [&'static str],
    /// (city, postcode pattern: 9 = digit, A = letter, anything else as is)
    pub(super) cities: &'static [(&'static str, &'static str)],
    pub(super) iban_bban: &'static str,
    pub(super) phone: &'static str,
}

#[rustfmt::skip]
pub(super) const COUNTRIES: &[Country] = &[
    Country {
        code: "DE",
        currency: "EUR",
        vat: &[19, 7],
        forms: &["GmbH", "GmbH & Co. KG", "AG", "KG", "SE", "e.K."],
        streets: &[
            "Hauptstraße", "Bahnhofstraße", "Industriestraße", "Gewerbepark", "Am Hafen",
            "Lindenweg", "Schillerstraße", "Goethestraße", "Daimlerstraße", "Robert-Bosch-Str.",
            "Mühlenweg", "Kaiserstraße", "Hafenstraße", "Gutenbergring", "Ludwig-Erhard-Allee",
        ],
        cities: &[
            ("Hamburg", "20999"), ("München", "80999"), ("Köln", "50999"),
            ("Frankfurt am Main", "60999"), ("Stuttgart", "70999"), ("Düsseldorf", "40999"),
            ("Leipzig", "04999"), ("Bremen", "28999"), ("Hannover", "30999"), ("Nürnberg", "90999"),
            ("Dortmund", "44999"), ("Mannheim", "68999"), ("Bielefeld", "33699"),
            ("Augsburg", "86999"), ("Kassel", "34199"),
        ],
        iban_bban: "999999999999999999",
        phone: "+49 99 9999999",
    },
    Country {
        code: "AT",
        currency: "EUR",
        vat: &[20, 10],
        forms: &["GmbH", "AG", "OG", "KG"],
        streets: &[
            "Mariahilfer Straße", "Landstraße", "Industriezeile", "Wiener Straße", "Hauptplatz",
            "Gewerbestraße",
        ],
        cities: &[
            ("Wien", "1999"), ("Graz", "8099"), ("Linz", "4099"), ("Salzburg", "5099"),
            ("Innsbruck", "6099"),
        ],
        iban_bban: "9999999999999999",
        phone: "+43 9 999999",
    },
    Country {
        code: "CH",
        currency: "CHF",
        vat: &[8],
        forms: &["AG", "GmbH", "SA", "Sàrl"],
        streets: &[
            "Bahnhofstrasse", "Seestrasse", "Rue du Rhône", "Industriestrasse", "Zürcherstrasse",
        ],
        cities: &[
            ("Zürich", "8099"), ("Basel", "4099"), ("Bern", "3099"), ("Genève", "1299"),
            ("Luzern", "6099"),
        ],
        iban_bban: "99999999999999999",
        phone: "+41 99 999 99 99",
    },
    Country {
        code: "FR",
        currency: "EUR",
        vat: &[20, 10, 5],
        forms: &["SAS", "SA", "SARL", "SNC"],
        streets: &[
            "Rue de la République", "Avenue Jean Jaurès", "Boulevard Voltaire", "Rue du Commerce",
            "Zone Industrielle Nord", "Rue Victor Hugo", "Quai de la Gare", "Allée des Tilleuls",
        ],
        cities: &[
            ("Paris", "75099"), ("Lyon", "69009"), ("Marseille", "13009"), ("Lille", "59999"),
            ("Toulouse", "31999"), ("Nantes", "44999"), ("Strasbourg", "67999"),
            ("Bordeaux", "33999"),
        ],
        iban_bban: "99999999999999999999999",
        phone: "+33 9 99 99 99 99",
    },
    Country {
        code: "NL",
        currency: "EUR",
        vat: &[21, 9],
        forms: &["B.V.", "N.V.", "V.O.F."],
        streets: &[
            "Keizersgracht", "Industrieweg", "Stationsstraat", "Havenweg", "Kerkstraat",
            "Marconistraat",
        ],
        cities: &[
            ("Amsterdam", "1099 AA"), ("Rotterdam", "3099 AA"), ("Utrecht", "3599 AA"),
            ("Eindhoven", "5699 AA"), ("Venlo", "5999 AA"),
        ],
        iban_bban: "AAAA9999999999",
        phone: "+31 99 999 9999",
    },
    Country {
        code: "BE",
        currency: "EUR",
        vat: &[21, 6],
        forms: &["NV", "BV", "SA", "SRL"],
        streets: &[
            "Rue Neuve", "Meir", "Industrielaan", "Chaussée de Louvain", "Havenlaan",
        ],
        cities: &[
            ("Bruxelles", "1099"), ("Antwerpen", "2099"), ("Gent", "9099"), ("Liège", "4099"),
        ],
        iban_bban: "999999999999",
        phone: "+32 9 999 99 99",
    },
    Country {
        code: "IT",
        currency: "EUR",
        vat: &[22, 10, 4],
        forms: &["S.p.A.", "S.r.l.", "S.a.s."],
        streets: &[
            "Via Roma", "Via Garibaldi", "Corso Italia", "Via dell'Industria", "Viale Europa",
            "Via Mazzini",
        ],
        cities: &[
            ("Milano", "20199"), ("Torino", "10199"), ("Bologna", "40199"), ("Verona", "37199"),
            ("Bergamo", "24199"),
        ],
        iban_bban: "A9999999999AAAAAAAAAAAA",
        phone: "+39 99 9999 9999",
    },
    Country {
        code: "ES",
        currency: "EUR",
        vat: &[21, 10],
        forms: &["S.A.", "S.L.", "S.L.U."],
        streets: &[
            "Calle Mayor", "Avenida de la Constitución", "Calle de Alcalá",
            "Polígono Industrial Sur", "Gran Vía",
        ],
        cities: &[
            ("Madrid", "28099"), ("Barcelona", "08099"), ("Valencia", "46099"),
            ("Zaragoza", "50099"), ("Sevilla", "41099"),
        ],
        iban_bban: "99999999999999999999",
        phone: "+34 999 999 999",
    },
    Country {
        code: "GB",
        currency: "GBP",
        vat: &[20, 5],
        forms: &["Ltd", "PLC", "LLP"],
        streets: &[
            "High Street", "Station Road", "Church Lane", "Mill Road", "Victoria Street",
            "Trading Estate", "Park Avenue",
        ],
        cities: &[
            ("London", "EC9A 9AA"), ("Manchester", "M9 9AA"), ("Birmingham", "B99 9AA"),
            ("Leeds", "LS9 9AA"), ("Bristol", "BS9 9AA"), ("Glasgow", "G99 9AA"),
        ],
        iban_bban: "AAAA99999999999999",
        phone: "+44 99 9999 9999",
    },
    Country {
        code: "PL",
        currency: "PLN",
        vat: &[23, 8],
        forms: &["Sp. z o.o.", "S.A.", "Sp.k."],
        streets: &[
            "ul. Marszałkowska", "ul. Długa", "ul. Przemysłowa", "al. Jerozolimskie",
            "ul. Kwiatowa",
        ],
        cities: &[
            ("Warszawa", "09-999"), ("Kraków", "39-999"), ("Wrocław", "59-999"),
            ("Poznań", "69-999"), ("Gdańsk", "89-999"),
        ],
        iban_bban: "999999999999999999999999",
        phone: "+48 99 999 99 99",
    },
    Country {
        code: "SE",
        currency: "SEK",
        vat: &[25, 12],
        forms: &["AB", "HB"],
        streets: &[
            "Storgatan", "Drottninggatan", "Industrivägen", "Kungsgatan", "Hamngatan",
        ],
        cities: &[
            ("Stockholm", "199 99"), ("Göteborg", "499 99"), ("Malmö", "299 99"),
            ("Uppsala", "799 99"),
        ],
        iban_bban: "99999999999999999999",
        phone: "+46 9 999 999 99",
    },
    Country {
        code: "DK",
        currency: "DKK",
        vat: &[25],
        forms: &["A/S", "ApS", "I/S"],
        streets: &[
            "Strøget", "Vesterbrogade", "Industrivej", "Havnegade", "Nørregade",
        ],
        cities: &[
            ("København", "1999"), ("Aarhus", "8099"), ("Odense", "5099"), ("Aalborg", "9099"),
        ],
        iban_bban: "99999999999999",
        phone: "+45 99 99 99 99",
    },
];

#[rustfmt::skip]
pub(super) const COMPANY_CORES: &[&str] = &[
    "Müller", "Schmidt", "Nordlicht", "Alpen", "Rhein", "Atlas", "Delta", "Phoenix", "Orion",
    "Vega", "Meridian", "Hansa", "Baltic", "Iberia", "Lumen", "Vulcan", "Kestrel", "Falcon",
    "Summit", "Pioneer", "Zenith", "Apex", "Nova", "Terra", "Aqua", "Polar", "Granite", "Cedar",
    "Eichen", "Maple", "Weber", "Fischer", "Becker", "Hoffmann", "Dupont", "Lefèvre", "Rossi",
    "Bianchi", "García", "Martínez", "Jansen", "de Vries", "Peeters", "Nowak", "Kowalski",
    "Lindqvist", "Andersen", "Smith & Sons", "Thompson", "Blackwood", "Sterling", "Horizon",
    "Continental", "Euro", "Trans", "Inter", "Global", "Metro", "Quantum", "Vertex", "Nordic",
    "Adria", "Carpathia",
];
#[rustfmt::skip]
pub(super) const COMPANY_SECTORS: &[&str] = &[
    "Logistik", "Maschinenbau", "Metallwaren", "Foods", "Pharma", "Elektrotechnik", "Verpackung",
    "Textiles", "Systems", "Trading", "Components", "Chemie", "Bau", "Industries", "Supplies",
    "Solutions", "Handel", "Automotive", "Medical", "Agrar", "Energie", "Kunststofftechnik",
    "Distribution", "Engineering", "Retail", "Office Supplies", "Hydraulics", "Transport",
];
#[rustfmt::skip]
pub(super) const FIRST_NAMES: &[&str] = &[
    "Anna", "Lukas", "Marie", "Jonas", "Sophie", "Felix", "Laura", "Maximilian", "Julia", "Paul",
    "Emma", "Leon", "Hannah", "Thomas", "Sabine", "Michael", "Claudia", "Stefan", "Petra",
    "Jürgen", "Camille", "Louis", "Chloé", "Hugo", "Élodie", "Giulia", "Marco", "Francesca",
    "Luca", "Sofia", "Javier", "Lucía", "Carlos", "Marta", "Daan", "Sanne", "Bram", "Lotte",
    "Oliver", "Charlotte", "James", "Emily", "George", "Amelia", "Piotr", "Agnieszka", "Tomasz",
    "Katarzyna", "Erik", "Astrid", "Lars", "Ingrid", "Mads", "Freja", "Wouter", "Els", "Nathalie",
    "Yusuf", "Aylin", "Dimitri", "Elena",
];
#[rustfmt::skip]
pub(super) const LAST_NAMES: &[&str] = &[
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Braun", "Zimmermann",
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "García", "Fernández",
    "González", "Rodríguez", "López", "de Jong", "Jansen", "de Vries", "van den Berg", "Bakker",
    "Visser", "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Nowak",
    "Kowalski", "Wiśniewski", "Wójcik", "Johansson", "Andersson", "Karlsson", "Nielsen", "Jensen",
    "Hansen", "Peeters", "Janssens", "Maes", "Yılmaz", "Kaya", "Popescu", "Novák",
];
#[rustfmt::skip]
pub(super) const DEPARTMENTS: &[&str] = &[
    "Purchasing", "Accounts Payable", "Einkauf", "Buchhaltung", "Logistics", "Warehouse",
    "Facility Management", "IT", "Production", "Quality", "Service", "Procurement",
];

/// Article families: (name pattern, unit code, EDIFACT unit, lowest and highest price in cents).
/// In a pattern, `{a}`..`{f}` take a value from the family's lists below.
pub(super) struct Family {
    pub(super) pattern: &'static str,
    pub(super) unit: &'static str,
    pub(super) price: (u64, u64),
    pub(super) values: &'static [&'static [&'static str]],
}

#[rustfmt::skip]
pub(super) const FAMILIES: &[Family] = &[
    Family { pattern: "Hex bolt DIN 933 M{a}x{b} {c}", unit: "EA", price: (4, 180),
        values: &[&["5", "6", "8", "10", "12", "16", "20"], &["16", "20", "25", "30", "40", "50", "60", "80", "100", "120"], &["A2", "A4", "8.8 zinc plated", "10.9 black"]] },
    Family { pattern: "Hex nut DIN 934 M{a} {b}", unit: "EA", price: (2, 60),
        values: &[&["4", "5", "6", "8", "10", "12", "16"], &["A2", "A4", "8 zinc plated"]] },
    Family { pattern: "Safety gloves {a}, size {b}", unit: "PR", price: (90, 1490),
        values: &[&["nitrile coated", "leather", "cut level C", "cotton knit", "PU palm"], &["7", "8", "9", "10", "11"]] },
    Family { pattern: "Copy paper A{a} {b} g/m², 500 sheets, {c}", unit: "PK", price: (399, 1299),
        values: &[&["4", "3"], &["75", "80", "90", "100"], &["white", "recycled", "ivory"]] },
    Family { pattern: "Pallet wrap film {a} µm, {b} mm x {c} m", unit: "RO", price: (890, 3490),
        values: &[&["17", "20", "23", "30"], &["450", "500"], &["250", "300", "1500"]] },
    Family { pattern: "Hydraulic hose 2SN DN{a}, {b} m, {c}", unit: "EA", price: (1890, 24900),
        values: &[&["6", "8", "10", "12", "16", "20", "25"], &["0.5", "1.0", "1.5", "2.0", "3.0", "5.0"], &["DKOL/DKOL", "CEL/DKOL 90°", "press fittings"]] },
    Family { pattern: "Deep groove ball bearing 62{a}-2RS{b}", unit: "EA", price: (180, 4900),
        values: &[&["00", "01", "02", "03", "04", "05", "06", "08", "10", "12"], &["", " C3", "/C3 SKF", " FAG", " NSK"]] },
    Family { pattern: "Cable NYM-J {a}x{b} mm², {c} m ring", unit: "RO", price: (2490, 39900),
        values: &[&["3", "4", "5", "7"], &["1.5", "2.5", "4", "6", "10"], &["50", "100"]] },
    Family { pattern: "LED panel {a} mm {b} W {c} K, {d}", unit: "EA", price: (2490, 18900),
        values: &[&["600x600", "1200x300", "625x625"], &["25", "30", "36", "40"], &["3000", "4000", "6500"], &["UGR<19", "DALI dimmable", "backlit"]] },
    Family { pattern: "Coffee beans {a}, {b}, 1 kg", unit: "KGM", price: (1190, 3990),
        values: &[&["Brazil Santos", "Colombia Supremo", "Ethiopia Sidamo", "Espresso blend", "Guatemala Antigua"], &["whole bean", "ground", "organic", "Fairtrade"]] },
    Family { pattern: "Cardboard box {a} mm, {b}", unit: "EA", price: (35, 890),
        values: &[&["300x200x150", "400x300x200", "600x400x400", "1200x800x600", "250x250x250"], &["single wall brown", "double wall brown", "white, printed", "with lid"]] },
    Family { pattern: "Stainless steel sheet 1.{a} {b} mm, {c}", unit: "KGM", price: (390, 1290),
        values: &[&["4301", "4404", "4571", "4016"], &["0.8", "1.0", "1.5", "2.0", "3.0", "5.0"], &["2B", "brushed K240", "2R bright annealed"]] },
    Family { pattern: "Toner {a} {b}, {c} pages", unit: "EA", price: (2990, 18900),
        values: &[&["HP", "Brother", "Kyocera", "Canon", "Lexmark"], &["black", "cyan", "magenta", "yellow"], &["2,500", "6,000", "12,000", "25,000"]] },
    Family { pattern: "Maintenance service {a}, technician {b}", unit: "HUR", price: (6500, 14500),
        values: &[&["on site", "remote", "emergency call-out", "weekend rate"], &["level 1", "level 2", "senior"]] },
    Family { pattern: "Freight {a} to {b}, {c}", unit: "EA", price: (4500, 189000),
        values: &[&["FTL", "LTL", "parcel", "pallet"], &["DE", "FR", "NL", "PL", "IT", "ES", "GB", "AT"], &["standard", "express", "ADR", "temperature controlled"]] },
    Family { pattern: "Diesel fuel {a}", unit: "LTR", price: (139, 199),
        values: &[&["EN 590", "B7", "winter grade", "HVO100"]] },
    Family { pattern: "Steel tube {a} mm S{b}, {c}", unit: "MTR", price: (290, 4900),
        values: &[&["21.3x2.0", "33.7x2.6", "48.3x3.2", "60.3x2.9", "88.9x3.2"], &["235JR", "355J2H"], &["black", "galvanised", "primed"]] },
    Family { pattern: "Paint RAL {a} {b}, {c} L", unit: "LTR", price: (990, 8900),
        values: &[&["1015", "3000", "5010", "6005", "7016", "7035", "9005", "9010"], &["silk matt", "high gloss", "primer", "anti-corrosion"], &["0.75", "2.5", "5", "10", "25"]] },
    Family { pattern: "Polypropylene granulate {a}, {b}", unit: "KGM", price: (95, 390),
        values: &[&["H 030 S", "RA 130 E", "HP 500 N", "BC 245 MO"], &["natural", "black masterbatch", "25 kg bag", "big bag 1000 kg"]] },
    Family { pattern: "Laptop {a} {b}, {c} GB RAM, {d}", unit: "EA", price: (59900, 289900),
        values: &[&["Lenovo ThinkPad", "Dell Latitude", "HP EliteBook", "Fujitsu Lifebook"], &["T14", "E15", "5440", "840 G10", "U7413"], &["8", "16", "32"], &["512 GB SSD", "1 TB SSD", "LTE", "3-year on-site warranty"]] },
    Family { pattern: "Cleaning agent {a}, {b}", unit: "LTR", price: (190, 2490),
        values: &[&["all-purpose", "glass", "sanitary", "degreaser", "floor"], &["1 L bottle", "5 L canister", "10 L canister", "concentrate"]] },
    Family { pattern: "Electric motor IE3 {a} kW {b} rpm, {c}", unit: "EA", price: (18900, 249000),
        values: &[&["0.75", "1.1", "1.5", "2.2", "4.0", "7.5", "11"], &["1500", "3000", "1000"], &["B3 foot", "B5 flange", "B14 face"]] },
];

#[rustfmt::skip]
pub(super) const NOTES: &[&str] = &[
    "Delivery to loading dock {n}, please call {phone} 30 minutes before arrival.",
    "Partial delivery: the remaining {q} units follow by {date}.",
    "Prices as agreed in framework contract {ref} of {date}.",
    "Ref. your e-mail of {date} ({person}).", "Please quote order number {ref} on all documents.",
    "Goods remain our property until paid in full.",
    "Payable within {d} days net, {p}% discount within {d2} days.",
    "Reverse charge: VAT to be accounted for by the recipient.",
    "Deliver between 07:00 and 14:30 only, gate {n}.", "Replaces credit note {ref} dated {date}.",
    "Cost centre {n}, project {ref}.", "Price adjustment for raw material surcharge {date}.",
    "Invoice for deliveries of week {n}/{y}.",
    "Pallets to be returned, exchange ratio 1:1 ({q} EUR pallets).",
    "Contact for queries: {person}, {phone}.", "Shipment {ref} by carrier {company}.",
    "Bank details changed as of {date}, see our letter {ref}.",
    "Order placed by {person} via portal, confirmation {ref}.",
];
