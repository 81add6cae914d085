"""The stages: featurize, train, report. Each runs one whole job of the tool."""
