package layersec;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small JSON reader for the library's own JSON output ({@code ls_inspect},
 * {@code ls_client_receipts}): objects become {@code Map<String, Object>} (in document order),
 * arrays {@code List<Object>}, numbers {@code Long} (or {@code Double} with a fraction or an
 * exponent), strings, booleans and null. The JDK has no JSON parser and the binding takes no
 * dependency; this one reads well-formed JSON and refuses nesting deeper than 200 levels.
 */
final class Json {
    private final String s;
    private int i;
    private int depth;

    private Json(String s) {
        this.s = s;
    }

    /** Parses one JSON text; {@link IllegalArgumentException} when it is not valid JSON. */
    static Object parse(String text) {
        Json p = new Json(text);
        p.space();
        Object v = p.value();
        p.space();
        if (p.i != text.length()) {
            throw p.error("trailing characters");
        }
        return v;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(Object v, String what) {
        if (!(v instanceof Map)) {
            throw new IllegalArgumentException("layersec: " + what + " is not a JSON object");
        }
        return (Map<String, Object>) v;
    }

    @SuppressWarnings("unchecked")
    static List<Object> array(Object v, String what) {
        if (!(v instanceof List)) {
            throw new IllegalArgumentException("layersec: " + what + " is not a JSON array");
        }
        return (List<Object>) v;
    }

    private IllegalArgumentException error(String what) {
        return new IllegalArgumentException("layersec: bad JSON from the library at " + i + ": "
                + what);
    }

    private void space() {
        while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) {
            i++;
        }
    }

    private Object value() {
        if (i >= s.length()) {
            throw error("unexpected end");
        }
        char c = s.charAt(i);
        switch (c) {
            case '{': return nested(true);
            case '[': return nested(false);
            case '"': return string();
            case 't': return literal("true", Boolean.TRUE);
            case 'f': return literal("false", Boolean.FALSE);
            case 'n': return literal("null", null);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    return number();
                }
                throw error("unexpected '" + c + "'");
        }
    }

    private Object literal(String word, Object v) {
        if (!s.startsWith(word, i)) {
            throw error("expected " + word);
        }
        i += word.length();
        return v;
    }

    private Object nested(boolean isObject) {
        if (++depth > 200) {
            throw error("nested too deep");
        }
        char close = isObject ? '}' : ']';
        Map<String, Object> map = isObject ? new LinkedHashMap<>() : null;
        List<Object> list = isObject ? null : new ArrayList<>();
        i++;
        space();
        if (i < s.length() && s.charAt(i) == close) {
            i++;
        } else {
            while (true) {
                space();
                if (isObject) {
                    if (i >= s.length() || s.charAt(i) != '"') {
                        throw error("expected a member name");
                    }
                    String k = string();
                    space();
                    expect(':');
                    space();
                    map.put(k, value());
                } else {
                    list.add(value());
                }
                space();
                if (i < s.length() && s.charAt(i) == ',') {
                    i++;
                    continue;
                }
                expect(close);
                break;
            }
        }
        depth--;
        return isObject ? Collections.unmodifiableMap(map) : Collections.unmodifiableList(list);
    }

    private void expect(char c) {
        if (i >= s.length() || s.charAt(i) != c) {
            throw error("expected '" + c + "'");
        }
        i++;
    }

    private String string() {
        i++; // the opening quote
        StringBuilder b = new StringBuilder();
        while (true) {
            if (i >= s.length()) {
                throw error("unterminated string");
            }
            char c = s.charAt(i++);
            if (c == '"') {
                return b.toString();
            }
            if (c < 0x20) {
                throw error("control character in a string");
            }
            if (c != '\\') {
                b.append(c);
                continue;
            }
            if (i >= s.length()) {
                throw error("unterminated escape");
            }
            char e = s.charAt(i++);
            switch (e) {
                case '"': case '\\': case '/': b.append(e); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u':
                    if (i + 4 > s.length()) {
                        throw error("short \\u escape");
                    }
                    try {
                        b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                    } catch (NumberFormatException x) {
                        throw error("bad \\u escape");
                    }
                    i += 4;
                    break;
                default: throw error("bad escape");
            }
        }
    }

    private Object number() {
        int start = i;
        boolean fraction = false;
        while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
            fraction |= ".eE".indexOf(s.charAt(i)) >= 0;
            i++;
        }
        String n = s.substring(start, i);
        try {
            return fraction ? (Object) Double.parseDouble(n) : (Object) Long.parseLong(n);
        } catch (NumberFormatException x) {
            throw error("bad number " + n);
        }
    }
}
