// Renders a FreeMarker template with a JSON data model, as Expensify's Integration Server
// renders export templates. Run: java -cp /usr/share/java/freemarker.jar Render.java MODEL TEMPLATE
// The model's JSON is turned into plain Java values so FreeMarker sees numbers as numbers
// (Long, BigInteger or BigDecimal) and booleans as booleans; JSON null becomes a missing value.
import freemarker.template.Configuration;
import freemarker.template.Template;
import freemarker.template.TemplateExceptionHandler;
import java.io.OutputStreamWriter;
import java.io.StringReader;
import java.io.Writer;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class Render {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: Render MODEL.json TEMPLATE.ftl");
            System.exit(2);
        }
        String json = Files.readString(Path.of(args[0]), StandardCharsets.UTF_8);
        String ftl = Files.readString(Path.of(args[1]), StandardCharsets.UTF_8);
        Json parser = new Json(json);
        Object model = parser.value();
        parser.end();
        if (!(model instanceof Map)) throw new IllegalArgumentException("model must be a JSON object");

        Configuration cfg = new Configuration(Configuration.VERSION_2_3_31);
        cfg.setDefaultEncoding("UTF-8");
        cfg.setTemplateExceptionHandler(TemplateExceptionHandler.RETHROW_HANDLER);
        cfg.setLogTemplateExceptions(false);
        Template template = new Template(Path.of(args[1]).getFileName().toString(), new StringReader(ftl), cfg);
        Writer out = new OutputStreamWriter(System.out, StandardCharsets.UTF_8);
        template.process(model, out);
        out.flush();
    }

    /** A strict, minimal JSON reader (RFC 8259) producing Map/List/String/Number/Boolean/null. */
    static final class Json {
        private final String s;
        private int i;

        Json(String s) { this.s = s; }

        void end() {
            ws();
            if (i != s.length()) throw err("trailing characters");
        }

        Object value() {
            ws();
            if (i >= s.length()) throw err("unexpected end");
            char c = s.charAt(i);
            if (c == '{') return object();
            if (c == '[') return array();
            if (c == '"') return string();
            if (s.startsWith("true", i)) { i += 4; return Boolean.TRUE; }
            if (s.startsWith("false", i)) { i += 5; return Boolean.FALSE; }
            if (s.startsWith("null", i)) { i += 4; return null; }
            return number();
        }

        private Map<String, Object> object() {
            Map<String, Object> m = new LinkedHashMap<>();
            i++;
            ws();
            if (peek() == '}') { i++; return m; }
            while (true) {
                ws();
                if (peek() != '"') throw err("expected a key");
                String k = string();
                ws();
                expect(':');
                m.put(k, value());
                ws();
                if (peek() == ',') { i++; continue; }
                expect('}');
                return m;
            }
        }

        private List<Object> array() {
            List<Object> l = new ArrayList<>();
            i++;
            ws();
            if (peek() == ']') { i++; return l; }
            while (true) {
                l.add(value());
                ws();
                if (peek() == ',') { i++; continue; }
                expect(']');
                return l;
            }
        }

        private String string() {
            StringBuilder b = new StringBuilder();
            i++;
            while (true) {
                if (i >= s.length()) throw err("unterminated string");
                char c = s.charAt(i++);
                if (c == '"') return b.toString();
                if (c != '\\') { b.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case '"': b.append('"'); break;
                    case '\\': b.append('\\'); break;
                    case '/': b.append('/'); break;
                    case 'b': b.append('\b'); break;
                    case 'f': b.append('\f'); break;
                    case 'n': b.append('\n'); break;
                    case 'r': b.append('\r'); break;
                    case 't': b.append('\t'); break;
                    case 'u': b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                    default: throw err("bad escape");
                }
            }
        }

        private Number number() {
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            String t = s.substring(start, i);
            if (t.isEmpty()) throw err("unexpected character");
            if (t.indexOf('.') < 0 && t.indexOf('e') < 0 && t.indexOf('E') < 0) {
                BigInteger big = new BigInteger(t);
                return big.bitLength() < 64 ? (Number) big.longValue() : big;
            }
            return new BigDecimal(t);
        }

        private char peek() { return i < s.length() ? s.charAt(i) : '\0'; }

        private void expect(char c) {
            if (peek() != c) throw err("expected '" + c + "'");
            i++;
        }

        private void ws() {
            while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) i++;
        }

        private IllegalArgumentException err(String what) {
            return new IllegalArgumentException("model JSON: " + what + " at offset " + i);
        }
    }
}
