//! Invoices and credit notes as PDF, written with `pdf-writer` in the
//! standard Helvetica fonts every PDF reader has (nothing embedded, no
//! external tool). Text is set in WinAnsi; a letter outside it is written
//! without its accent where it has one (`ł` stays `?`, see `docs/tax.md`).

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str, TextStr};

/// A document ready to print: an invoice, or a credit note referring to one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvoiceDocument {
    /// "Invoice 12" or "Credit note 3".
    pub title: String,
    /// "Invoice date: 27 November 2026", and for a credit note the invoice
    /// it corrects.
    pub facts: Vec<String>,
    /// The seller's name, address and VAT number, one line each.
    pub seller: Vec<String>,
    /// The buyer's name and address in the usual order.
    pub buyer: Vec<String>,
    pub lines: Vec<DocumentLine>,
    /// (label, amount), the last one the total.
    pub totals: Vec<(String, String)>,
    /// Closing sentences (merchant of record, how a refund is paid).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentLine {
    pub item: String,
    pub quantity: String,
    pub unit_price: String,
    pub amount: String,
}

const PAGE: (f32, f32) = (595.0, 842.0); // A4 in points
const LEFT: f32 = 56.0;
const RIGHT: f32 = 539.0;
const BOTTOM: f32 = 90.0;

/// Helvetica's advance widths (1/1000 em) for ASCII 32..=126; other
/// characters are measured as their unaccented letter, or 556.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // '0'..'?'
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // '@'..'O'
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // 'P'..'_'
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // '`'..'o'
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // 'p'..'~'
];

/// The WinAnsi byte of a character, if it has one.
fn win_ansi(c: char) -> Option<u8> {
    let special = [
        ('€', 0x80),
        ('‚', 0x82),
        ('„', 0x84),
        ('…', 0x85),
        ('‘', 0x91),
        ('’', 0x92),
        ('“', 0x93),
        ('”', 0x94),
        ('•', 0x95),
        ('–', 0x96),
        ('—', 0x97),
        ('™', 0x99),
        ('Š', 0x8A),
        ('š', 0x9A),
        ('Ž', 0x8E),
        ('ž', 0x9E),
        ('Œ', 0x8C),
        ('œ', 0x9C),
        ('Ÿ', 0x9F),
    ];
    match u32::from(c) {
        0x20..=0x7E | 0xA0..=0xFF => u8::try_from(u32::from(c)).ok(),
        _ => special.iter().find(|(s, _)| *s == c).map(|(_, b)| *b),
    }
}

/// Text in WinAnsi bytes: a character outside it loses its accent
/// (`č` → `c`), or becomes `?`.
fn encode(text: &str) -> Vec<u8> {
    use unicode_normalization::UnicodeNormalization;
    text.chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            win_ansi(c)
                .or_else(|| c.to_string().nfd().next().and_then(win_ansi).filter(|b| *b >= 0x20))
                .or_else(|| win_ansi(unaccented(c)))
                .unwrap_or(b'?')
        })
        .collect()
}

/// Letters with a stroke, which have no decomposition.
fn unaccented(c: char) -> char {
    match c {
        'Ł' => 'L',
        'ł' => 'l',
        'Đ' => 'D',
        'đ' => 'd',
        'Ħ' => 'H',
        'ħ' => 'h',
        'ı' => 'i',
        other => other,
    }
}

/// The width of text at `size` points.
fn width(text: &str, size: f32) -> f32 {
    use unicode_normalization::UnicodeNormalization;
    let units: u32 = text
        .chars()
        .map(|c| {
            let base = c.to_string().nfd().next().unwrap_or(c);
            let code = u32::from(base);
            if (32..=126).contains(&code) { u32::from(HELVETICA[(code - 32) as usize]) } else { 556 }
        })
        .sum();
    units as f32 * size / 1000.0
}

/// Text cut to fit `max` points, with an ellipsis when cut.
fn fit(text: &str, size: f32, max: f32) -> String {
    if width(text, size) <= max {
        return text.to_owned();
    }
    let mut cut: String = text.to_owned();
    while !cut.is_empty() && width(&format!("{cut}…"), size) > max {
        cut.pop();
    }
    format!("{}…", cut.trim_end())
}

/// Lays text out on pages, top to bottom.
struct Writer {
    pages: Vec<Content>,
    y: f32,
}

const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

impl Writer {
    fn new() -> Self {
        Writer { pages: vec![Content::new()], y: PAGE.1 - 64.0 }
    }

    fn page(&mut self) -> &mut Content {
        if self.pages.is_empty() {
            self.pages.push(Content::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Room for `height` more points, or a new page.
    fn room(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.pages.push(Content::new());
            self.y = PAGE.1 - 64.0;
        }
    }

    fn text(&mut self, x: f32, y: f32, font: Name<'static>, size: f32, text: &str) {
        let bytes = encode(text);
        let page = self.page();
        page.begin_text();
        page.set_font(font, size);
        page.next_line(x, y);
        page.show(Str(&bytes));
        page.end_text();
    }

    fn right(&mut self, right: f32, y: f32, font: Name<'static>, size: f32, text: &str) {
        let x = right - width(text, size);
        self.text(x, y, font, size, text);
    }

    fn rule(&mut self, y: f32, thickness: f32) {
        let page = self.page();
        page.set_line_width(thickness);
        page.move_to(LEFT, y);
        page.line_to(RIGHT, y);
        page.stroke();
    }
}

/// The document as a PDF file.
pub fn render_pdf(doc: &InvoiceDocument) -> Vec<u8> {
    let mut w = Writer::new();
    let y = w.y;
    w.text(LEFT, y, BOLD, 20.0, &doc.title);
    w.y -= 26.0;
    for fact in &doc.facts {
        let y = w.y;
        w.text(LEFT, y, REGULAR, 10.0, fact);
        w.y -= 14.0;
    }
    // Seller and buyer side by side.
    w.y -= 16.0;
    let top = w.y;
    let column = |w: &mut Writer, x: f32, heading: &str, lines: &[String]| {
        let mut y = top;
        w.text(x, y, BOLD, 10.0, heading);
        y -= 15.0;
        for line in lines {
            w.text(x, y, REGULAR, 10.0, &fit(line, 10.0, 230.0));
            y -= 13.0;
        }
        y
    };
    let seller_end = column(&mut w, LEFT, "Seller", &doc.seller);
    let buyer_end = column(&mut w, 310.0, "Billed to", &doc.buyer);
    w.y = seller_end.min(buyer_end) - 18.0;
    // The lines.
    let columns = (LEFT, 360.0, 450.0, RIGHT);
    let y = w.y;
    w.text(columns.0, y, BOLD, 9.5, "Item");
    w.right(columns.1, y, BOLD, 9.5, "Quantity");
    w.right(columns.2, y, BOLD, 9.5, "Unit price");
    w.right(columns.3, y, BOLD, 9.5, "Amount");
    w.rule(y - 5.0, 0.5);
    w.y -= 20.0;
    for line in &doc.lines {
        w.room(16.0);
        let y = w.y;
        w.text(columns.0, y, REGULAR, 10.0, &fit(&line.item, 10.0, 250.0));
        w.right(columns.1, y, REGULAR, 10.0, &line.quantity);
        w.right(columns.2, y, REGULAR, 10.0, &line.unit_price);
        w.right(columns.3, y, REGULAR, 10.0, &line.amount);
        w.y -= 16.0;
    }
    w.room(30.0 + 16.0 * doc.totals.len() as f32);
    let y = w.y + 8.0;
    w.rule(y, 0.5);
    w.y -= 8.0;
    let last = doc.totals.len().saturating_sub(1);
    for (n, (label, amount)) in doc.totals.iter().enumerate() {
        if n == last {
            // The total is the number a reader looks for.
            w.y -= 6.0;
            let y = w.y + 14.0;
            w.rule(y, 1.2);
            let y = w.y - 2.0;
            w.right(columns.2, y, BOLD, 13.0, label);
            w.right(columns.3, y, BOLD, 13.0, amount);
            w.y -= 22.0;
        } else {
            let y = w.y;
            w.right(columns.2, y, REGULAR, 10.0, label);
            w.right(columns.3, y, REGULAR, 10.0, amount);
            w.y -= 15.0;
        }
    }
    w.y -= 10.0;
    for note in &doc.notes {
        for line in wrap(note, 9.0, RIGHT - LEFT) {
            w.room(13.0);
            let y = w.y;
            w.text(LEFT, y, REGULAR, 9.0, &line);
            w.y -= 12.0;
        }
        w.y -= 4.0;
    }
    assemble(doc, w.pages)
}

/// Words of `text` in lines no wider than `max` points.
fn wrap(text: &str, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
        if width(&candidate, size) > max && !line.is_empty() {
            lines.push(std::mem::replace(&mut line, word.to_owned()));
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The catalog, the pages with their fonts, and the document's title.
fn assemble(doc: &InvoiceDocument, pages: Vec<Content>) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let (catalog, tree, regular, bold, info) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4), Ref::new(5));
    let page_ids: Vec<Ref> = (0..pages.len()).map(|n| Ref::new(6 + 2 * n as i32)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(page_ids.len() as i32);
    pdf.type1_font(regular).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info).title(TextStr(&doc.title)).producer(TextStr("Coffer"));
    for (n, content) in pages.into_iter().enumerate() {
        let (page_id, content_id) = (page_ids[n], Ref::new(7 + 2 * n as i32));
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE.0, PAGE.1));
        page.parent(tree);
        page.contents(content_id);
        let mut resources = page.resources();
        resources.fonts().pair(REGULAR, regular).pair(BOLD, bold);
        drop(resources);
        drop(page);
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(lines: usize) -> InvoiceDocument {
        InvoiceDocument {
            title: "Invoice 7".into(),
            facts: vec!["Invoice date: 27 November 2026".into(), "Order ord_1".into()],
            seller: vec!["Coffer Demo Operator".into(), "VAT number DE123456789".into()],
            buyer: vec!["Zoë Łukasiewicz".into(), "Rua Augusta 100".into(), "Portugal".into()],
            lines: (0..lines)
                .map(|n| DocumentLine {
                    item: format!("Product {n} with a name long enough to be cut somewhere near the end of it"),
                    quantity: "1".into(),
                    unit_price: "19.99 EUR".into(),
                    amount: "19.99 EUR".into(),
                })
                .collect(),
            totals: vec![("Net total".into(), "19.99 EUR".into()), ("Total".into(), "24.59 EUR".into())],
            notes: vec!["Paid by card.".into()],
        }
    }

    #[test]
    fn an_invoice_is_a_pdf_with_its_text_in_helvetica() {
        let pdf = render_pdf(&document(2));
        assert!(pdf.starts_with(b"%PDF-") && pdf.ends_with(b"%%EOF\n") || pdf.ends_with(b"%%EOF"), "a PDF file");
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/Helvetica-Bold") && text.contains("/WinAnsiEncoding"));
        assert!(text.contains("(Invoice 7)") && text.contains("(24.59 EUR)"), "the total is written");
        assert_eq!(text.matches("/Type /Page\n").count() + text.matches("/Type /Page ").count(), 1, "one page");
    }

    #[test]
    fn many_lines_go_on_to_another_page() {
        let pdf = String::from_utf8_lossy(&render_pdf(&document(50))).into_owned();
        assert!(pdf.contains("/Count 2") || pdf.contains("/Count 3"), "more than one page");
    }

    #[test]
    fn text_is_winansi_and_loses_only_what_it_cannot_show() {
        assert_eq!(encode("Zoë € ×"), b"Zo\xeb \x80 \xd7");
        assert_eq!(encode("Čapek"), b"Capek", "the accent goes, the letter stays");
        assert_eq!(encode("Łódź"), b"L\xf3dz", "Ł has no WinAnsi byte: its letter stays");
        assert_eq!(encode("東京"), b"??", "what has no letter to fall back on");
        assert!(width("19.99 EUR", 10.0) > width("9.99 EUR", 10.0));
        assert!(
            fit(&"x".repeat(200), 10.0, 100.0).ends_with('…')
                && width(&fit(&"x".repeat(200), 10.0, 100.0), 10.0) <= 100.0
        );
        assert_eq!(wrap("one two three", 10.0, 45.0), ["one two", "three"]);
    }
}
