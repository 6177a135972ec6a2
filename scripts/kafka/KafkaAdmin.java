// Admin helper for the local development broker, run by scripts/kafka.sh as a single-file
// Java program (`java -cp '.local/kafka/lib/*' scripts/kafka/KafkaAdmin.java ...`).
//
//   wait    --bootstrap H:P --brokers N --timeout-secs S
//           Exits 0 once the cluster answers DescribeCluster with N brokers and a controller,
//           1 on timeout. This is "really ready", not "the port is open".
//   topics  --bootstrap H:P --file topics.txt --replication-factor R [--min-isr M]
//           Creates every topic of the file that does not exist yet (idempotent). A topic that
//           exists with fewer partitions than asked is reported and grown; one with more is left.
//   list    --bootstrap H:P
//           Prints "name partitions" for every non-internal topic.
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.errors.TopicExistsException;

public class KafkaAdmin {
    public static void main(String[] argv) throws Exception {
        if (argv.length == 0) {
            usage();
        }
        Map<String, String> opts = new HashMap<>();
        for (int i = 1; i + 1 < argv.length; i += 2) {
            opts.put(argv[i], argv[i + 1]);
        }
        String bootstrap = opts.getOrDefault("--bootstrap", "127.0.0.1:9092");
        switch (argv[0]) {
            case "wait" -> System.exit(waitReady(bootstrap,
                    Integer.parseInt(opts.getOrDefault("--brokers", "1")),
                    Integer.parseInt(opts.getOrDefault("--timeout-secs", "90"))));
            case "topics" -> System.exit(createTopics(bootstrap, Path.of(required(opts, "--file")),
                    Short.parseShort(opts.getOrDefault("--replication-factor", "1")),
                    opts.get("--min-isr")));
            case "list" -> System.exit(list(bootstrap));
            default -> usage();
        }
    }

    static void usage() {
        System.err.println("usage: KafkaAdmin wait|topics|list --bootstrap HOST:PORT [options]");
        System.exit(2);
    }

    static String required(Map<String, String> opts, String key) {
        String v = opts.get(key);
        if (v == null) {
            System.err.println("missing " + key);
            System.exit(2);
        }
        return v;
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "1000");
        return Admin.create(p);
    }

    static int waitReady(String bootstrap, int brokers, int timeoutSecs) throws InterruptedException {
        Instant deadline = Instant.now().plusSeconds(timeoutSecs);
        String last = "no answer yet";
        try (Admin admin = admin(bootstrap)) {
            while (Instant.now().isBefore(deadline)) {
                try {
                    DescribeClusterResult r = admin.describeCluster();
                    int n = r.nodes().get(5, TimeUnit.SECONDS).size();
                    boolean controller = r.controller().get(5, TimeUnit.SECONDS) != null;
                    if (n >= brokers && controller) {
                        // Metadata answers before the broker accepts writes to new topics;
                        // a topic listing proves the request path end to end.
                        admin.listTopics().names().get(5, TimeUnit.SECONDS);
                        System.out.println("ready: " + n + " broker(s) at " + bootstrap);
                        return 0;
                    }
                    last = n + " of " + brokers + " broker(s) registered";
                } catch (Exception e) {
                    last = rootMessage(e);
                }
                Thread.sleep(500);
            }
        }
        System.err.println("not ready after " + timeoutSecs + "s: " + last);
        return 1;
    }

    record Spec(String name, int partitions, Map<String, String> configs) {}

    static List<Spec> readSpecs(Path file) throws Exception {
        List<Spec> specs = new ArrayList<>();
        for (String raw : Files.readAllLines(file)) {
            String line = raw.strip();
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            String[] f = line.split("\\s+");
            if (f.length < 2) {
                throw new IllegalArgumentException("bad line in " + file + ": " + raw);
            }
            Map<String, String> configs = new TreeMap<>();
            if (f.length > 2 && !f[2].equals("-")) {
                for (String kv : f[2].split(",")) {
                    String[] p = kv.split("=", 2);
                    configs.put(p[0], p[1]);
                }
            }
            specs.add(new Spec(f[0], Integer.parseInt(f[1]), configs));
        }
        return specs;
    }

    static int createTopics(String bootstrap, Path file, short rf, String minIsr) throws Exception {
        List<Spec> specs = readSpecs(file);
        int failures = 0;
        try (Admin admin = admin(bootstrap)) {
            for (Spec s : specs) {
                Map<String, String> configs = new TreeMap<>(s.configs());
                if (minIsr != null) {
                    configs.put("min.insync.replicas", minIsr);
                }
                NewTopic t = new NewTopic(s.name(), s.partitions(), rf).configs(configs);
                try {
                    admin.createTopics(List.of(t)).all().get(30, TimeUnit.SECONDS);
                    System.out.println("created " + s.name() + " partitions=" + s.partitions() + " rf=" + rf);
                } catch (ExecutionException e) {
                    if (e.getCause() instanceof TopicExistsException) {
                        failures += reconcile(admin, s);
                    } else {
                        System.err.println("failed to create " + s.name() + ": " + rootMessage(e));
                        failures++;
                    }
                }
            }
        }
        return failures == 0 ? 0 : 1;
    }

    static int reconcile(Admin admin, Spec s) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(s.name())).allTopicNames()
                .get(30, TimeUnit.SECONDS).get(s.name());
        int have = d.partitions().size();
        if (have < s.partitions()) {
            admin.createPartitions(Map.of(s.name(), NewPartitions.increaseTo(s.partitions())))
                    .all().get(30, TimeUnit.SECONDS);
            System.out.println("grew " + s.name() + " from " + have + " to " + s.partitions() + " partitions");
        } else {
            System.out.println("exists " + s.name() + " partitions=" + have);
        }
        return 0;
    }

    static int list(String bootstrap) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            var names = admin.listTopics().names().get(30, TimeUnit.SECONDS);
            var descs = admin.describeTopics(names).allTopicNames().get(30, TimeUnit.SECONDS);
            new TreeMap<>(descs).forEach((n, d) -> System.out.println(n + " " + d.partitions().size()));
        }
        return 0;
    }

    static String rootMessage(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null) {
            t = t.getCause();
        }
        return t.getClass().getSimpleName() + ": " + t.getMessage();
    }
}
