package io.stimmung.analysis;

import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.de.GermanAnalyzer;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.AnalyzerFactory;

/**
 * The {@code german} analyzer for the local test node, which lacks the analysis-common module.
 * Elasticsearch's own {@code german} analyzer is this same Lucene class with its default German
 * stop words, so documents and queries analyse exactly as on a production node.
 */
@NamedComponent("german")
public class GermanAnalyzerFactory implements AnalyzerFactory {
    @Override
    public Analyzer create() {
        return new GermanAnalyzer();
    }
}
